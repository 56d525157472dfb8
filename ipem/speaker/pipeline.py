"""GMM-UBM speaker verification in steps, chained through files.

The steps the ``ipem`` command, ``python -m ipem.demo`` and the notebooks all
call::

    extract     audio files          -> feature files       (MFCC+deltas, VAD, CMVN)
    train_ubm   feature files        -> UBM                 (EM with splitting)
    adapt       UBM + enrollment     -> speaker models      (MAP, one task per speaker)
    score       UBM + models + trials -> scores             (LLR, one task per test segment)
    normalize   scores + cohort      -> normalised scores   (Z/T/ZT/S/AS-norm, cohort scoring
                                                             one task per segment)
    calibrate   dev scores + key     -> calibration (JSON)  (logistic regression; fusion)
    evaluate    scores [+ key]       -> EER, minDCF, actDCF, Cllr, minCllr

Score files hold ``model test score [target|nontarget]`` lines: ipem's own
(labelled) format and Kaldi's three columns; the labels of the latter come
from a NIST key file (``model test target|nontarget``, :func:`read_key`).

Lists name utterances by their audio path relative to the corpus root
(``wav/spk/utt.wav``); :func:`feature_path` maps such an entry to its
feature file under the feature directory (``FEATS/wav/spk/utt.htk``).  An
entry that already names a feature file is used as it is.

Every step checks what it can before any work: its outputs can be written
(:mod:`ipem.io.preflight`), its lists are well formed (a model id, trial or
utterance given twice is refused with both line numbers), and the headers
of every feature file it will read are read, so that a missing or broken
file is found before the first task.  Steps that write a directory of files
(:func:`extract`, :func:`adapt`) write it all or nothing
(:func:`ipem.io.atomic.atomic_directory`): a failure, an interrupt or
SIGTERM leaves no half-filled directory.

Every step takes ``controller`` (where its tasks run: a spec string as
``ipem --cluster`` takes, ``"local:4"``, ``"mpi:4"`` or ``"profile:DIR"``,
which the step starts after its checks and stops when it ends; ``None`` for
in-process, an :class:`ipem.LocalController`, an :class:`ipem.MPICluster`'s
controller, ...; see :func:`ipem.as_controller`).  The functions only log
(through :mod:`logging`, logger ``ipem.speaker.pipeline``); printing is left
to their callers.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._optional import require
from ..io import FeatureRef, is_list_file, is_scp_file, list_features, read_list, read_scp
from ..io.atomic import atomic_directory
from ..io.datadir import DataDir, read_data_dir
from ..io.kaldi import is_pipe
from ..io.lists import PIPES_HINT, expand_sources
from ..io.models import check_model_id, model_file
from ..io.preflight import check_input_file, check_output_dir, check_output_file
from . import metrics as _metrics
from .frontend import extract_many
from .calibration import DEFAULT_PRIOR, LogisticCalibration
from ..parallel import controller_from_spec
from .map import adapt_speakers, ubm_params
from .normalization import NORMALIZATIONS, normalize_scores, score_matrix
from .scoring import SCORING_METHODS, Trial, read_trials, score_trials, write_scores

logger = logging.getLogger(__name__)

__all__ = ["AUDIO_SUFFIXES", "feature_path", "feature_source", "utterance_id", "audio_files",
           "feature_files",
           "read_enrollment", "extract", "train_ubm", "format_record", "adapt", "score",
           "read_key", "read_score_file", "read_score_matrix", "read_scores", "split_scores",
           "write_score_file", "normalize", "calibrate", "apply_calibration", "evaluate",
           "format_metrics", "SCORE_FORMATS"]

#: File suffixes taken for audio (anything else in a list names a feature file).
AUDIO_SUFFIXES = (".wav", ".flac", ".sph", ".ogg")


# ---------------------------------------------------------------------------
# lists and paths
# ---------------------------------------------------------------------------

def _is_audio(entry):
    return Path(entry).suffix.lower() in AUDIO_SUFFIXES


def _listed(entry, lst, lineno, features_dir, root, fmt, allow_pipes):
    """:func:`feature_path` of a list entry; a refusal names the list and line."""
    try:
        return feature_path(entry, features_dir, root, fmt, allow_pipes=allow_pipes)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(lst)}, line {lineno}: {exc}") from None


def _where(lst, lineno):
    return os.fspath(lst) if lineno is None else f"{os.fspath(lst)}, line {lineno}"


def _once(path, seen, lst, lineno, shown):
    """Refuse a file met before (``seen``: file -> (list, line)), naming both places.

    ``path`` is the file an entry names (compared as an absolute path),
    ``shown`` the entry as the list writes it.
    """
    if isinstance(path, FeatureRef):
        key = (path.path, path.key)
    else:
        key = path if is_pipe(path) else os.path.normpath(os.path.abspath(path))
    if key in seen:
        first = seen[key]
        same = os.fspath(first[0]) == os.fspath(lst)
        where = f"line {first[1]}" if same and first[1] is not None else _where(*first)
        raise ValueError(f"{_where(lst, lineno)}: utterance {shown} is listed twice (first "
                         f"at {where}): it would count twice")
    seen[key] = (lst, lineno)


@contextlib.contextmanager
def _running(controller):
    """The controller of a step's tasks, entered once the step's checks have passed.

    A cluster spec string (``"local:4"``, ``"mpi:4"``, ``"profile:DIR"``, as
    ``ipem --cluster`` takes) is started here and stopped when the step ends;
    engines and local shards then run with one BLAS thread each, so that all
    give the same float32 results.  Anything else is yielded as it is.
    """
    if not isinstance(controller, str):
        yield controller
        return
    with controller_from_spec(controller,
                              blas_threads=None if controller == "local" else 1) as ctrl:
        yield ctrl


def _relative_to_root(p, root):
    """``p`` (absolute) relative to ``root``, or None when it is outside."""
    for base in (Path(root).absolute(), Path(root).resolve()):
        try:
            return p.relative_to(base)
        except ValueError:
            pass
    return None


def feature_path(entry, features_dir, root=None, fmt="htk", *, allow_pipes=False):
    """The feature file of a list entry.

    Parameters
    ----------
    entry : str or os.PathLike
        An audio path (relative to ``root``, or absolute under it), or the
        path of a feature file; with a :class:`ipem.io.DataDir`, an utterance
        id of its ``feats.scp`` (or an audio path, whose id is
        :func:`utterance_id`).
    features_dir : str, os.PathLike or ipem.io.DataDir
        Directory :func:`extract` wrote the features to, or a Kaldi data
        directory read by :func:`ipem.io.read_data_dir` (see
        :func:`feature_source`).
    root : str or os.PathLike, optional
        Corpus directory the list entries are relative to.
    fmt : {"htk", "npy", "h5"}, default="htk"
        Feature format, which is also the feature files' extension.
    allow_pipes : bool, default=False
        Return an entry that is a shell command (a Kaldi pipe such as
        ``cmd |``, run through a shell when read) as it is; by default it is
        refused.

    Returns
    -------
    str or FeatureRef
        ``features_dir/<entry with the suffix .fmt>`` for audio; for a
        feature file, ``entry`` itself (joined to ``root`` when relative);
        for a data directory, the utterance's :class:`ipem.io.FeatureRef`.

    Raises
    ------
    ValueError
        For an absolute audio path outside ``root``, an audio path with
        ``..`` (its features cannot be under ``features_dir``), a shell
        command when ``allow_pipes`` is false, an utterance id not in the
        data directory's ``feats.scp``.

    Examples
    --------
    >>> feature_path("wav/us1/us1_test_00.wav", "feats", "corpus")
    'feats/wav/us1/us1_test_00.htk'
    >>> feature_path("other/x.npy", "feats", "corpus")
    'corpus/other/x.npy'
    """
    entry = os.fspath(entry)
    if isinstance(features_dir, DataDir):
        refs = features_dir.feature_refs()
        if entry not in refs and _is_audio(entry):
            entry = utterance_id(entry, root)
        return features_dir.feature_ref(entry)
    if is_pipe(entry):
        if not allow_pipes:
            raise ValueError(f"{entry!r} is a shell command (a Kaldi pipe); {PIPES_HINT}")
        return entry
    p = Path(entry)
    if not _is_audio(p):
        q = p if p.is_absolute() or root is None else Path(root) / p
        return str(q)
    if root is not None and p.is_absolute():
        p = _relative_to_root(p, root)
        if p is None:
            raise ValueError(f"audio file {entry} is not under the corpus root {root}")
    elif p.is_absolute():
        p = p.relative_to(p.anchor)
    if ".." in p.parts:
        raise ValueError(f"audio path {entry} goes up ('..'): its features cannot be under "
                         f"{features_dir}")
    return str(Path(features_dir) / p.with_suffix("." + fmt))


def utterance_id(entry, root=None):
    """The Kaldi utterance id ipem gives an audio file: its path under ``root``, no suffix.

    :func:`extract` with ``fmt="kaldi"`` and a corpus root names the matrices
    so, and :func:`feature_path` finds an audio list entry in a ``feats.scp``
    so.

    Parameters
    ----------
    entry : str or os.PathLike
        Audio path relative to ``root`` (or absolute, under it).
    root : str or os.PathLike, optional

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For a path outside ``root``, with ``..``, or with whitespace (which a
        Kaldi id cannot hold).

    Examples
    --------
    >>> utterance_id("wav/us1/us1_test_00.wav")
    'wav/us1/us1_test_00'
    """
    shown = os.fspath(entry)
    p = Path(shown)
    if p.is_absolute():
        p = _relative_to_root(p, root) if root is not None else None
        if p is None:
            raise ValueError(f"audio file {shown} is not under the corpus root {root}")
    if ".." in p.parts:
        raise ValueError(f"audio path {shown} goes up ('..'): it has no utterance id")
    utt = p.with_suffix("").as_posix()
    if not utt or any(c.isspace() for c in utt):
        raise ValueError(f"audio path {shown!r} has whitespace: it cannot be a Kaldi "
                         "utterance id")
    return utt


def feature_source(features_dir=None, fmt="htk", *, data_dir=None, allow_pipes=False):
    """Where a step finds the features of list entries.

    Parameters
    ----------
    features_dir : str or os.PathLike, optional
        Feature directory from :func:`extract`.  With ``fmt="kaldi"`` it is
        read as a Kaldi data directory (its ``feats.scp``).
    fmt : {"htk", "npy", "h5", "kaldi"}, default="htk"
    data_dir : str, os.PathLike or ipem.io.DataDir, optional
        A Kaldi data directory whose ``feats.scp`` names the features; list
        entries are then its utterance ids.  Takes precedence.
    allow_pipes : bool, default=False
        Accept shell commands in ``feats.scp``.

    Returns
    -------
    str, os.PathLike or ipem.io.DataDir
        What :func:`feature_path` takes as ``features_dir``.

    Raises
    ------
    ValueError
        A data directory that cannot be read, or whose tables disagree (file
        and line named, :func:`ipem.io.read_data_dir`).
    """
    if isinstance(data_dir, DataDir):
        return data_dir
    if data_dir is not None:
        return read_data_dir(data_dir, need=("feats.scp",), allow_pipes=allow_pipes)
    if features_dir is None or isinstance(features_dir, DataDir):
        return features_dir
    if fmt == "kaldi":
        return read_data_dir(features_dir, need=("feats.scp",), allow_pipes=allow_pipes)
    return features_dir


def feature_files(lists=None, features_dir=None, root=None, fmt="htk", *, allow_pipes=False,
                  data_dir=None):
    """Feature files of the utterances named in lists (e.g. ``ubm.lst``).

    Parameters
    ----------
    lists : str, os.PathLike or sequence of them, optional
        Utterance lists (every field of every line is an utterance, see
        :func:`feature_path`) or Kaldi ``feats.scp`` files (kept as they
        are: the UBM trainer expands them).  With a data directory, lists of
        its utterance ids; without lists, every utterance of its
        ``feats.scp``.
    features_dir, root, fmt
        See :func:`feature_path` and :func:`feature_source`.
    data_dir : str, os.PathLike or ipem.io.DataDir, optional
        A Kaldi data directory (:func:`feature_source`).
    allow_pipes : bool, default=False
        Accept shell commands (Kaldi pipes, ``cmd |``) in the lists and scp
        files; they run through a shell when the features are read.  Then
        the result is :class:`ipem.io.FeatureRef` objects (headers read here,
        :func:`ipem.io.list_features` with ``allow_pipes=True``), so that
        nothing downstream refuses the commands allowed here.

    Returns
    -------
    list of str (list of FeatureRef with ``allow_pipes`` or a data directory)
        Feature file paths (and ``.scp`` paths), in list order.

    Raises
    ------
    ValueError
        For an empty list, an audio path outside ``root`` or with ``..``, a
        shell command when ``allow_pipes`` is false, or an utterance listed
        twice (the list file and line are named, both lines for a repeat).
    ipem.io.FeatureFileError
        For a list that cannot be read (a ValueError).
    """
    features_dir = feature_source(features_dir, fmt, data_dir=data_dir, allow_pipes=allow_pipes)
    if isinstance(lists, (str, os.PathLike)):
        lists = [lists]
    if not lists:
        if not isinstance(features_dir, DataDir):
            raise ValueError("no utterance lists given (or a Kaldi data directory)")
        return list(features_dir.feature_refs().values())
    files, seen = [], {}
    for lst in lists:
        if is_scp_file(lst) and not isinstance(features_dir, DataDir):
            read_scp(lst, allow_pipes=allow_pipes)  # a command is refused now, with its line
            _once(os.fspath(lst), seen, lst, None, os.fspath(lst))
            files.append(os.fspath(lst))
            continue
        for n, fields in read_list(lst, allow_pipes=allow_pipes):
            for entry in fields:
                f = _listed(entry, lst, n, features_dir, root, fmt, allow_pipes)
                _once(f, seen, lst, n, entry)
                files.append(f)
    if allow_pipes and not isinstance(features_dir, DataDir):
        return list_features(files, allow_pipes=True)
    return files


def read_enrollment(path, features_dir, root=None, fmt="htk", *, allow_pipes=False):
    """Read an enrollment list: ``model_id utterance [utterance ...]`` per line.

    Parameters
    ----------
    path : str or os.PathLike
        The list, one line per model id; a path with spaces is quoted
        (``spk1 "wav/my file.wav"``).  An utterance may be a list of feature
        files (``.scp``, ``.lst``); it is read now, so that a command in it
        is refused before any work.
    features_dir, root, fmt
        See :func:`feature_path`; with a :class:`ipem.io.DataDir` the
        utterances are its utterance ids (:func:`feature_source`).
    allow_pipes : bool, default=False
        Accept shell commands (Kaldi pipes, ``cmd |``) in the list and in
        the lists it names; they run through a shell when the features are
        read.  The lists an entry names are then expanded here into
        :class:`ipem.io.FeatureRef` objects (headers read).

    Returns
    -------
    dict
        ``model_id -> list of feature file paths`` (or FeatureRefs, see
        ``allow_pipes``), in file order.

    Raises
    ------
    ValueError
        For an empty list, a line without an utterance, a model id that
        cannot name a model file (``/``, ``\\``, ``..``), a model id on two
        lines or an utterance twice on one line (both line numbers given),
        an audio path outside ``root`` or with ``..``, a shell command when
        ``allow_pipes`` is false (the message gives the file and line
        number).
    """
    path = os.fspath(path)
    out, line_of = {}, {}
    for n, fields in read_list(path, allow_pipes=allow_pipes):
        if len(fields) < 2:
            raise ValueError(f"{path}, line {n}: expected 'model_id utterance...', "
                             f"got only {fields[0]!r}")
        try:
            check_model_id(fields[0])
        except ValueError as exc:
            raise ValueError(f"{path}, line {n}: {exc}") from None
        if fields[0] in line_of:
            raise ValueError(f"{path}, line {n}: model id {fields[0]!r} repeats line "
                             f"{line_of[fields[0]]} (one line per model: put all its "
                             "utterances there)")
        line_of[fields[0]] = n
        utts, seen = out.setdefault(fields[0], []), {}
        for u in fields[1:]:
            f = _listed(u, path, n, features_dir, root, fmt, allow_pipes)
            _once(f, seen, path, n, u)
            if not is_list_file(f):
                utts.append(f)
            elif allow_pipes:
                utts.extend(list_features(f, allow_pipes=True))
            else:
                for _ in expand_sources(f):  # reads the list: a command is refused here
                    pass
                utts.append(f)
    return out


def audio_files(root, lists=None, *, allow_pipes=False):
    """Audio files of a corpus, relative to its root.

    Parameters
    ----------
    root : str or os.PathLike
        Corpus directory.
    lists : sequence of path-like, optional
        Take only the audio named in these lists (any field with an audio
        suffix, see :data:`AUDIO_SUFFIXES`); default: every audio file under
        ``root``.  An entry must be under ``root`` (relative without
        ``..``, or absolute inside it), so that its features are written
        under the feature directory.
    allow_pipes : bool, default=False
        Accept lists with shell commands (Kaldi pipes) in them; these are
        not audio and are skipped.

    Returns
    -------
    list of str
        Sorted, without duplicates, relative to ``root``.

    Raises
    ------
    ValueError
        If no audio file is found, a list is empty, an entry is outside
        ``root`` or goes up (``..``), names a file that does not exist or
        cannot be read, or a list names a shell command and ``allow_pipes``
        is false (the list file and line are named).
    """
    root = Path(root)
    if lists:
        if isinstance(lists, (str, os.PathLike)):
            lists = [lists]
        found = set()
        for lst in lists:
            for n, fields in read_list(lst, allow_pipes=allow_pipes):
                for f in fields:
                    if _is_audio(f) and not is_pipe(f):
                        rel = _audio_entry(f, root, lst, n)
                        try:
                            check_input_file(root / rel, "audio file")
                        except ValueError as exc:
                            raise ValueError(f"{os.fspath(lst)}, line {n}: {exc}") from None
                        found.add(rel)
    else:
        found = {str(p.relative_to(root)) for p in root.rglob("*") if _is_audio(p)}
    if not found:
        raise ValueError(f"no audio files found under {root}"
                         + (f" in {', '.join(map(os.fspath, lists))}" if lists else ""))
    return sorted(found)


def _audio_entry(entry, root, lst, lineno):
    """An audio list entry relative to ``root``; refused when its features would land outside."""
    p = Path(entry)
    if p.is_absolute():
        p = _relative_to_root(p, root)
        if p is None:
            raise ValueError(f"{os.fspath(lst)}, line {lineno}: audio file {entry} is outside "
                             f"the corpus root {root}: its features would be written outside "
                             "the feature directory")
    if ".." in p.parts:
        raise ValueError(f"{os.fspath(lst)}, line {lineno}: audio path {entry} goes up ('..') "
                         "out of the corpus root: its features would be written outside the "
                         "feature directory")
    return str(p)


# ---------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------

def extract(root=None, out_dir=None, *, lists=None, fmt=None, sample_rate=8000,
            controller=None, progress=False, allow_pipes=False, data_dir=None, **frontend):
    """Extract features of a corpus, one load-balanced task per audio file.

    Features are 20 MFCCs (c0 = log energy; 300-3400 Hz filterbank at 8 kHz)
    + deltas + double deltas of the frames an energy VAD keeps (a Gaussian
    mixture on the frame log-energies by default), normalised per utterance
    (CMVN); see :func:`ipem.speaker.frontend.extract_features`.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Corpus directory holding the audio (or give ``data_dir``).
    out_dir : str or os.PathLike
        Feature directory; the layout under ``root`` is mirrored
        (:func:`feature_path`).  With ``fmt="kaldi"`` it holds archives
        ``feats.<n>.ark`` (one per batch of utterances, written where the
        batch ran) and ``feats.scp`` naming them by absolute path; with a
        ``data_dir`` it becomes a data directory: ``utt2spk``, ``spk2utt``
        and ``wav.scp`` are copied into it.
    lists : sequence of path-like, optional
        Only the audio named in these lists (see :func:`audio_files`).
    fmt : {"htk", "npy", "h5", "kaldi"}, optional
        Default ``"kaldi"`` with a ``data_dir`` (the only format there),
        ``"htk"`` otherwise.  Kaldi utterance ids of corpus audio are
        :func:`utterance_id` (``wav/spk/utt``).
    data_dir : str or os.PathLike, optional
        A Kaldi data directory whose ``wav.scp`` names the audio (paths, or
        with ``allow_pipes`` commands ending in ``|`` whose output is the
        audio file); ``utt2spk``/``spk2utt`` are checked against it
        (:func:`ipem.io.read_data_dir`).
    sample_rate : int, default=8000
        Analysis sample rate in Hz (files are resampled to it).
    controller : Controller, int, DirectView, str or None
        Where the tasks run (engines must see the same file system);
        ``None``: two threads in this process; a cluster spec (``"mpi:4"``)
        is started after the checks.
    progress : bool, default=False
        Show a progress bar.
    **frontend
        Front-end options for :func:`ipem.speaker.frontend.extract_features`:
        ``vad`` (True, False, ``"gmm"``, ``"kaldi"``, ``"percentile"``),
        ``norm`` (``"cmvn"``, ``"cmn"``, ``"sliding_cmvn"``, ``"sliding_cmn"``,
        ``"warp"``, ``"none"``), ``norm_window``, ``rasta``, ``low_freq``,
        ``high_freq``, ``n_ceps``, ...

    Returns
    -------
    list of ipem.io.FeatureRef
        The feature files written (absolute paths), in the order of
        :func:`audio_files`; ``ref.n_frames`` counts the speech frames.

    Raises
    ------
    ValueError
        No audio found, a missing, unreadable or truncated audio file, a
        file without speech, an ``out_dir`` that cannot be made or written.
    ipem.EngineValueError
        The same, raised on engines (the message names the file).
    ipem.MissingDependencyError
        Without the packages of ``ipem[speaker]``.

    Notes
    -----
    All or nothing: the features are written into a temporary directory
    next to ``out_dir`` and moved into it only when every file is done
    (:func:`ipem.io.atomic.atomic_directory`); files of ``out_dir`` with
    other names are kept, files of the same name replaced.  A failure
    leaves ``out_dir`` as it was.
    """
    from .. import io as _io

    if out_dir is None:
        raise ValueError("extract: out_dir is needed")
    check_output_dir(out_dir, "out_dir")
    if fmt is None:
        fmt = "kaldi" if data_dir is not None else "htk"
    if data_dir is not None or fmt == "kaldi":
        return _extract_kaldi(root, out_dir, lists, data_dir, controller, progress, allow_pipes,
                              dict(frontend, sample_rate=sample_rate))
    if root is None:
        raise ValueError("extract: give the corpus root or a Kaldi data directory (data_dir)")
    root = Path(root).absolute()
    for module in ("soundfile", "python_speech_features"):
        require(module, "to extract features from audio")
    audio = audio_files(root, lists, allow_pipes=allow_pipes)
    logger.info("extracting features of %d audio files under %s -> %s", len(audio), root,
                out_dir)
    final = Path(out_dir).absolute()
    with _running(controller) as ctrl, atomic_directory(final) as tmp:
        written = extract_many([root / a for a in audio], tmp, fmt, root=root,
                               controller=ctrl, progress=progress,
                               sample_rate=sample_rate, **frontend)
    written = [final / Path(p).relative_to(tmp) for p in written]
    refs = _io.list_features([os.fspath(p) for p in written], fmt)
    logger.info("extracted %d files, %d speech frames", len(refs),
                sum(r.n_frames for r in refs))
    return refs


#: Tables a data directory's extraction copies into its output data directory.
_COPIED_TABLES = ("utt2spk", "spk2utt", "wav.scp")


def _extract_kaldi(root, out_dir, lists, data_dir, controller, progress, allow_pipes, kwargs):
    """:func:`extract` into Kaldi archives: batches of utterances, one archive each."""
    import shutil

    from .. import io as _io

    for module in ("soundfile", "python_speech_features", "kaldiio"):
        require(module, "to extract features into Kaldi archives")
    if data_dir is not None:
        if root is not None or lists:
            raise ValueError("extract: give either a data directory or a corpus root (with "
                             "lists), not both")
        data = read_data_dir(data_dir, need=("wav.scp",), allow_pipes=allow_pipes)
        utts = []
        for utt, audio in data.wav.items():
            where = f"{data.where('wav.scp', utt)}: utterance {utt}"
            if not is_pipe(audio):
                try:
                    check_input_file(audio, "audio file")
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                audio = os.path.abspath(audio)
            utts.append((utt, audio, where))
        what = data_dir
    else:
        if root is None:
            raise ValueError("extract: give the corpus root or a Kaldi data directory")
        root = Path(root).absolute()
        utts = [(utterance_id(a), str(root / a), a)
                for a in audio_files(root, lists, allow_pipes=allow_pipes)]
        what = root
    final = os.path.abspath(os.fspath(out_dir))
    logger.info("extracting features of %d utterances of %s -> %s (Kaldi ark/scp)", len(utts),
                what, out_dir)
    with _running(controller) as ctrl, atomic_directory(final) as tmp:
        places = 2 if ctrl is None else max(1, int(getattr(ctrl, "n_shards", 1) or 1))
        n_batches = min(len(utts), 4 * places)
        batches = [_Batch(i + 1, utts[i::n_batches], tmp) for i in range(n_batches)]
        task_args = (kwargs,)
        if ctrl is None:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=places) as pool:
                done = list(pool.map(lambda b: _extract_ark_task(b, *task_args), batches))
        else:
            done = ctrl.map_tasks(_extract_ark_task, batches, *task_args, progress=progress,
                                  desc="extract")
        index = {}
        for batch, offsets in zip(batches, done):
            ark = os.path.join(final, f"feats.{batch.part}.ark")
            for utt, offset in offsets:
                index[utt] = f"{ark}:{offset}"
            os.unlink(os.path.join(tmp, f"feats.{batch.part}.scp"))
        _io.write_data_dir(tmp, feats={utt: index[utt] for utt, _, _ in utts})
        if data_dir is not None:
            for table in _COPIED_TABLES:
                if os.path.exists(data.file(table)):
                    shutil.copyfile(data.file(table), os.path.join(tmp, table))
    refs = _io.list_features(os.path.join(final, "feats.scp"))
    logger.info("extracted %d utterances, %d speech frames", len(refs),
                sum(r.n_frames for r in refs))
    return refs


class _Batch(NamedTuple):
    """Utterances ``(utt, audio, where)`` extracted into ``<directory>/feats.<part>.ark``."""

    part: int
    utts: list
    directory: str

    def __repr__(self):         # how a failed task is named
        return f"feats.{self.part}.ark: {len(self.utts)} utterances"


def _audio_of_command(command, directory, where):
    """Run a ``wav.scp`` command (``... |``); its output is written to a temporary file."""
    import subprocess
    import tempfile

    cmd = command.strip()
    if not cmd.endswith("|"):
        raise ValueError(f"{where}: {command!r} is not a command whose output is the audio "
                         "(it must end with '|')")
    fd, path = tempfile.mkstemp(suffix=".wav", prefix=".pipe.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            proc = subprocess.run(cmd[:-1], shell=True, stdout=fh, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ValueError(f"{where}: the command {cmd!r} failed with status "
                             f"{proc.returncode}" + (f": {err[-1]}" if err else ""))
    except BaseException:
        os.unlink(path)
        raise
    return path


def _extract_ark_task(batch, kwargs):
    """One batch of :func:`extract` into ``feats.<n>.ark`` (runs where the task runs).

    Returns ``[(utt, offset), ...]``; the scp of the batch is written beside
    its archive for the client to merge.
    """
    from ..io.kaldi import write_kaldi
    from .frontend import extract_features

    part, utts, directory = batch.part, batch.utts, batch.directory
    mats = {}
    for utt, audio, where in utts:
        source = _audio_of_command(audio, directory, where) if is_pipe(audio) else audio
        try:
            mats[utt] = extract_features(source, **kwargs)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        finally:
            if source is not audio:
                os.unlink(source)
    ark = os.path.join(directory, f"feats.{part}.ark")
    refs = write_kaldi(ark, os.path.join(directory, f"feats.{part}.scp"), mats)
    return [(ref.key, int(ref.path.rsplit(":", 1)[1])) for ref in refs]


def format_record(record):
    """One line describing an EM iteration of :func:`train_ubm`.

    Parameters
    ----------
    record : ipem.IterationRecord

    Returns
    -------
    str
        Iteration, number of Gaussians, log-likelihood per frame, change,
        floored variances, dead components, and per engine the frames and
        E-step milliseconds.
    """
    info = record.info
    frames = "/".join(str(n) for n in info.get("shard_frames", []))
    times = "/".join(f"{t * 1e3:.0f}" for t in info.get("shard_time", []))
    return (f"  iter {record.iteration:3d}  K={record.stage:<4d} loglik/frame "
            f"{record.objective:9.4f}  change {record.change:9.2e}  floored "
            f"{info.get('n_floored', 0):3d}  dead {len(info.get('dead', []))}  engines frames "
            f"{frames} E-step ms {times}")


def train_ubm(feature_files, *, n_components, init="split", stage_iter=8, final_iter=20,
              tol=1e-3, variance_floor=0.1, seed=0, checkpoint=None, plot=None, out=None,
              controller=None, callbacks=None):
    """Train a diagonal UBM by EM with binary splitting; engines read their own files.

    Parameters
    ----------
    feature_files : sequence of str or FeatureRef, or str
        Feature files (e.g. from :func:`feature_files`), Kaldi ``.scp`` or
        list files; the client reads only their headers.
    n_components : int
        Final number of Gaussians.
    init : {"split", "kmeans"}, default="split"
    stage_iter : int, default=8
        EM iterations at most per intermediate size.
    final_iter : int, default=20
        EM iterations at most at the final size.
    tol : float, default=1e-3
        A stage ends when the per-frame log-likelihood gains less.
    variance_floor : float, default=0.1
        Fraction of the global variance.
    seed : int, default=0
    checkpoint : str, optional
        ``.npz`` written every iteration; training resumes from it.
    plot : str or ipem.LivePlot, optional
        PNG to write the convergence plot to (every 10 iterations and at the
        end), or a LivePlot to draw into (e.g. in a notebook).
    out : str, optional
        Save the trained model here (``UBMTrainer.save``).
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:4"``) is started after the step's checks.
    callbacks : callable or list of callables, optional
        Called with every :class:`ipem.IterationRecord` (see
        :func:`format_record`).

    Returns
    -------
    ipem.UBMTrainer
        Fitted: ``weights_`` of shape (n_components,), ``means_`` and
        ``covariances_`` of shape (n_components, n_features), ``history_``.

    Raises
    ------
    ValueError, ipem.io.FeatureFileError
        Bad parameters; a missing, truncated or malformed feature file (named
        in the message); an ``out``, ``checkpoint`` or ``plot`` path that
        cannot be written (found before training).
    ipem.EngineValueError
        A feature file rejected on an engine (named in the message).
    """
    from ..mixture.ubm import UBMTrainer
    from ..plotting import LivePlot, image_format

    for path, what in ((out, "out"), (checkpoint, "checkpoint"),
                       (plot if isinstance(plot, (str, os.PathLike)) else None, "plot")):
        if path is not None:
            check_output_file(path, what)
    if checkpoint is not None and os.path.exists(checkpoint):
        check_input_file(checkpoint, "checkpoint")
    if isinstance(plot, (str, os.PathLike)):
        image_format(plot)
    callbacks = [] if callbacks is None else (list(callbacks) if isinstance(callbacks, (list, tuple))
                                              else [callbacks])
    own_plot = None
    if isinstance(plot, (str, os.PathLike)):
        own_plot = plot = LivePlot(title=f"UBM training ({n_components} Gaussians)",
                                   path=os.fspath(plot), save_every=10)
    if plot is not None:
        callbacks.append(plot)
    if isinstance(feature_files, (str, os.PathLike)):
        feature_files = [feature_files]
    feature_files = list(feature_files)
    if feature_files and not all(isinstance(f, FeatureRef) for f in feature_files):
        feature_files = list_features(feature_files)   # headers read before any engine starts
    logger.info("training a %d-Gaussian UBM from %d feature files", n_components,
                len(feature_files))
    try:
        with _running(controller) as ctrl:
            ubm = UBMTrainer(n_components, init=init, stage_iter=stage_iter,
                             final_iter=final_iter, tol=tol, variance_floor=variance_floor,
                             checkpoint=checkpoint, controller=ctrl, random_state=seed,
                             callbacks=callbacks)
            ubm.fit(feature_files)
    except BaseException:
        if own_plot is not None:
            try:
                own_plot.close()    # the plot of the iterations done, if it can be written
            except (OSError, ValueError) as exc:
                logger.warning("cannot write the convergence plot %s: %s", own_plot.path, exc)
        raise
    if out is not None:             # the model first: it is what the hours were spent on
        ubm.save(out)
        logger.info("UBM -> %s", out)
    if own_plot is not None:
        own_plot.close()
    return ubm


def adapt(ubm, enrollment, out_dir, *, features_dir=None, root=None, fmt="htk",
          relevance_factor=16.0, adapt="m", controller=None, progress=False, allow_pipes=False,
          data_dir=None):
    """MAP-adapt one speaker model per enrolled speaker and write them to ``out_dir``.

    Parameters
    ----------
    ubm : ipem.UBMTrainer, str or any form :func:`ipem.speaker.map.ubm_params` accepts
        The UBM (a model file path is read).
    enrollment : dict, str or None
        ``model_id -> feature files`` (see :func:`read_enrollment`), or the
        path of an enrollment list (then ``features_dir`` or ``data_dir`` is
        needed); ``None`` with ``data_dir``: one model per speaker of its
        ``spk2utt`` (or ``utt2spk``), from the features of ``feats.scp``.
    out_dir : str or os.PathLike
        Each task writes ``<out_dir>/<model_id>.npz`` (created if needed).
    features_dir, root, fmt
        For an enrollment list path, see :func:`feature_path`.
    data_dir : str, os.PathLike or ipem.io.DataDir, optional
        A Kaldi data directory (:func:`feature_source`): the speakers, or
        the utterance ids of an enrollment list.
    relevance_factor : float, default=16.0
    adapt : str, default="m"
        Parameters to adapt: any of ``m`` (means), ``w`` (weights), ``v``
        (variances).
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:4"``) is started after the step's checks.
    progress : bool, default=False

    Returns
    -------
    dict
        ``model_id -> model file path`` (absolute), in enrollment order.

    Raises
    ------
    ValueError
        A malformed list or option, a speaker id that is no file name, a
        missing or malformed feature file, features of another dimension
        than the UBM's (all found before any model is adapted), an
        ``out_dir`` that cannot be made or written.
    ipem.EngineValueError
        A bad feature file (NaN, ...), found on an engine.

    Notes
    -----
    All or nothing: the models are written into a temporary directory next
    to ``out_dir`` and moved into it when every speaker is done
    (:func:`ipem.io.atomic.atomic_directory`); models of other speakers
    already in ``out_dir`` are kept, those of the same speakers replaced.  A
    failure (or an interrupt) leaves ``out_dir`` as it was.
    """
    check_output_dir(out_dir, "out_dir")
    where = (f"{os.fspath(enrollment)}: speaker" if isinstance(enrollment, (str, os.PathLike))
             else "speaker")
    if isinstance(enrollment, (str, os.PathLike)):
        if features_dir is None and data_dir is None:
            raise ValueError("adapt: an enrollment list path needs features_dir or data_dir")
        enrollment = read_enrollment(enrollment, feature_source(
            features_dir, fmt, data_dir=data_dir, allow_pipes=allow_pipes), root, fmt,
            allow_pipes=allow_pipes)
    elif enrollment is None:
        if data_dir is None:
            raise ValueError("adapt: give the enrollment (a list or a dict) or a Kaldi data "
                             "directory (data_dir)")
        enrollment, table = _data_dir_speakers(feature_source(data_dir=data_dir,
                                                              allow_pipes=allow_pipes))
        where = f"{table}: speaker"
    params = ubm_params(ubm)
    _check_headers(enrollment, params[1].shape[1], where)
    final = os.path.abspath(os.fspath(out_dir))
    logger.info("MAP-adapting %d speaker models (r=%g, adapt=%s) -> %s", len(enrollment),
                relevance_factor, adapt, out_dir)
    with _running(controller) as ctrl, atomic_directory(final) as tmp:
        written = adapt_speakers(params, enrollment, controller=ctrl,
                                 relevance_factor=relevance_factor, adapt=adapt, out_dir=tmp,
                                 progress=progress)
    return {spk: os.path.join(final, os.path.relpath(path, tmp))
            for spk, path in written.items()}


def _data_dir_speakers(data):
    """``speaker -> FeatureRefs`` of a data directory (speaker ids checked as model ids),
    and the table the speakers come from."""
    if data.utt2spk is None and data.spk2utt is None:
        read_data_dir(data.path, need=("speakers",))      # raises, naming what is missing
    table = "spk2utt" if data.spk2utt is not None else "utt2spk"
    speakers = data.speaker_features()
    for spk, utts in data.speakers().items():
        try:
            check_model_id(spk)
        except ValueError as exc:
            raise ValueError(f"{data.where(table, spk if table == 'spk2utt' else utts[0])}: "
                             f"{exc}") from None
    return speakers, data.file(table)


def _check_headers(sources, n_features, what):
    """Read now the headers of every feature file ``sources`` name (``name -> source``).

    A missing, unreadable or malformed file, or one of another dimension than
    the UBM's, is found before any task starts (the frames themselves, NaN
    included, are checked where they are read).  Messages start with
    ``"<what> <name>: "`` (e.g. ``"enroll.lst: speaker spk1: "``).
    """
    for name, source in sources.items():
        items = [source] if isinstance(source, (str, os.PathLike, FeatureRef)) else source
        if isinstance(items, np.ndarray):
            continue
        for item in items:
            if isinstance(item, FeatureRef):
                refs = [item]
            elif isinstance(item, (str, os.PathLike)):
                try:
                    refs = list_features(item)
                except ValueError as exc:
                    raise ValueError(f"{what} {name}: {exc}") from None
            else:
                continue                 # arrays and the like: checked by the step
            for ref in refs:
                if ref.n_features != n_features:
                    raise ValueError(f"{what} {name}: {ref.where()} has {ref.n_features} "
                                     f"features per frame, but the UBM has {n_features}")


def score(ubm, trials, models_dir, features_dir=None, *, root=None, fmt="htk", top_c=5,
          out=None, controller=None, progress=False, allow_pipes=False, data_dir=None,
          scoring=None):
    """Score a trial list against model files, one task per test segment.

    Parameters
    ----------
    ubm : ipem.UBMTrainer, str or any form :func:`ipem.speaker.map.ubm_params` accepts
    trials : str or sequence of Trial
        A NIST-style trial list (``model_id test [target|nontarget]`` lines)
        or its rows (:func:`ipem.speaker.scoring.read_trials`).
    models_dir : str or os.PathLike
        Directory of ``<model_id>.npz`` files (from :func:`adapt`).
    features_dir, root, fmt
        Where the test segments' features are, see :func:`feature_path`.
    top_c : int or None, default=5
        Top-C Gaussian selection; ``None`` scores exactly.
    out : str, optional
        Write the score file here (``model test score [label]`` lines).
    scoring : {"topc", "exact", "linear"} or None
        Average LLR with top-C selection, exact average LLR, or linear
        scoring (Glembek et al. 2009: one matrix product of the models' mean
        offsets with the test segments' UBM statistics; see
        :mod:`ipem.speaker.scoring`).  ``None``: ``"exact"`` if ``top_c`` is
        None, else ``"topc"``.
    data_dir : str, os.PathLike or ipem.io.DataDir, optional
        A Kaldi data directory whose ``feats.scp`` holds the test
        utterances; the trials' test column names its utterance ids
        (:func:`feature_source`).
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:4"``) is started after the step's checks.
    progress : bool, default=False

    Returns
    -------
    trials : list of Trial
    scores : ndarray of shape (n_trials,), float64
        Average per-frame log-likelihood ratios, in trial order.

    Raises
    ------
    ValueError
        A malformed trial list (a trial twice included), a model id without
        a model file (named, with the trial list), a missing or malformed
        feature file, an ``out`` that cannot be written (all found before
        scoring).
    ipem.EngineValueError
        A bad feature or model file, found on an engine.
    """
    if out is not None:
        check_output_file(out, "out")
    where = os.fspath(trials) if isinstance(trials, (str, os.PathLike)) else "trials"
    trials = (read_trials(trials, allow_pipes=allow_pipes)
              if isinstance(trials, (str, os.PathLike)) else list(trials))
    models = _model_files(dict.fromkeys(t[0] for t in trials), models_dir, "model id", where)
    source = feature_source(features_dir, fmt, data_dir=data_dir, allow_pipes=allow_pipes)
    pairs = [(t[0], _test_segment(t[1], source, root, fmt, allow_pipes, where)) for t in trials]
    ubm = ubm_params(ubm)
    _check_headers({t[1]: test for t, (_, test) in zip(trials, pairs)}, ubm[1].shape[1],
                   f"{where}: test segment")
    if scoring is None:
        scoring = "exact" if top_c is None else "topc"
    if scoring not in SCORING_METHODS:
        raise ValueError(f"unknown scoring method {scoring!r}; expected one of "
                         f"{', '.join(SCORING_METHODS)}")
    logger.info("scoring %d trials of %d models (%s)", len(trials), len(models),
                f"top-{top_c}" if scoring == "topc" else scoring)
    with _running(controller) as ctrl:
        scores = np.asarray(score_trials(ubm, pairs, models, controller=ctrl, top_c=top_c,
                                         progress=progress, method=scoring), dtype=np.float64)
    if out is not None:
        write_scores(out, trials, scores)
        logger.info("scores -> %s", out)
    return trials, scores


def _test_segment(test, source, root, fmt, allow_pipes, where):
    """:func:`feature_path` of a trial's test segment; a refusal names the trial list."""
    try:
        return feature_path(test, source, root, fmt, allow_pipes=allow_pipes)
    except ValueError as exc:
        raise ValueError(f"{where}: test segment {test!r}: {exc}") from None


# ---------------------------------------------------------------------------
# score files and keys
# ---------------------------------------------------------------------------

_LABELS = ("target", "nontarget")

#: Score file formats :func:`write_score_file` writes: ``"ipem"`` (with the
#: label column where trials have one) and ``"kaldi"`` (``model test score``).
SCORE_FORMATS = ("ipem", "kaldi")


def read_key(path):
    """Read a NIST-style key file: ``model test target|nontarget`` per line.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``(model, test) -> "target" | "nontarget"``, in file order.

    Raises
    ------
    ValueError
        An empty file, a line without exactly three columns, a label other
        than target/nontarget, or a trial given twice (file and line named).
    """
    path = os.fspath(path)
    key, line_of = {}, {}
    for n, fields in read_list(path):
        if len(fields) != 3:
            raise ValueError(f"{path}, line {n}: expected 'model test target|nontarget', got "
                             f"{len(fields)} columns")
        label = fields[2].lower()
        if label not in _LABELS:
            raise ValueError(f"{path}, line {n}: label {fields[2]!r} is not target/nontarget")
        trial = (fields[0], fields[1])
        if trial in line_of:
            raise ValueError(f"{path}, line {n}: trial '{trial[0]} {trial[1]}' repeats line "
                             f"{line_of[trial]}")
        line_of[trial] = n
        key[trial] = label
    return key


def read_score_file(path, key=None, *, require_labels=False):
    """Read a score file: ``model test score [target|nontarget]`` per line.

    Both ipem's format (with the label) and Kaldi's three columns are read;
    a file may mix them.

    Parameters
    ----------
    path : str or os.PathLike
    key : str, os.PathLike or dict, optional
        A key file (:func:`read_key`) or its dict.  Then only the key's
        trials are returned, labelled by the key; score lines of other trials
        are skipped (so one score file serves a development and an
        evaluation key), and every key trial must have a score.
    require_labels : bool, default=False
        Refuse a line whose trial gets no label (neither from the line nor
        from a key).

    Returns
    -------
    trials : list of Trial
        ``Trial(model, test, label)`` in file order; ``label`` is ``None``
        for unlabelled lines (only when ``require_labels`` is false).
    scores : ndarray of shape (n_trials,), float64

    Raises
    ------
    ValueError
        An empty file, a line with other than 3 or 4 columns, a score that
        is not a finite number, a bad label, a trial given twice, a label the
        key contradicts, key trials without a score (file and line named).
    """
    path = os.fspath(path)
    key_name = "key"
    if key is not None and not isinstance(key, dict):
        key_name = os.fspath(key)
        key = read_key(key)
    trials, scores, line_of, skipped = [], [], {}, 0
    for n, fields in read_list(path):
        if len(fields) not in (3, 4):
            raise ValueError(f"{path}, line {n}: expected 'model test score "
                             f"[target|nontarget]', got {len(fields)} columns")
        try:
            s = float(fields[2])
        except ValueError:
            raise ValueError(f"{path}, line {n}: score {fields[2]!r} is not a number") from None
        if not math.isfinite(s):
            raise ValueError(f"{path}, line {n}: score {fields[2]!r} is not a finite number")
        label = None
        if len(fields) == 4:
            label = fields[3].lower()
            if label not in _LABELS:
                raise ValueError(f"{path}, line {n}: label {fields[3]!r} is not "
                                 "target/nontarget")
        trial = (fields[0], fields[1])
        if trial in line_of:
            raise ValueError(f"{path}, line {n}: trial '{trial[0]} {trial[1]}' repeats line "
                             f"{line_of[trial]}")
        line_of[trial] = n
        if key is not None:
            if trial not in key:
                skipped += 1
                continue
            if label is not None and label != key[trial]:
                raise ValueError(f"{path}, line {n}: label {label!r}, but {key_name} says "
                                 f"{key[trial]!r}")
            label = key[trial]
        elif label is None and require_labels:
            raise ValueError(f"{path}, line {n}: no target/nontarget label (Kaldi's 'model "
                             "test score' lines need a key file)")
        trials.append(Trial(trial[0], trial[1], label))
        scores.append(s)
    if key is not None:
        missing = [t for t in key if t not in line_of]
        if missing:
            raise ValueError(f"{path}: no score for {len(missing)} trials of {key_name} "
                             f"(first: '{missing[0][0]} {missing[0][1]}')")
        if skipped:
            logger.info("%s: %d score lines are not in %s (skipped)", path, skipped, key_name)
    return trials, np.asarray(scores, dtype=np.float64)


def read_scores(path, key=None):
    """Read a labelled score file (or a Kaldi score file with its key).

    Parameters
    ----------
    path : str or os.PathLike
        ``model test score [target|nontarget]`` lines (see
        :func:`read_score_file`).
    key : str, os.PathLike or dict, optional
        Key file giving the labels (needed for Kaldi's three columns).

    Returns
    -------
    tar : ndarray of shape (n_target,), float64
        Scores of the target trials.
    non : ndarray of shape (n_nontarget,), float64
        Scores of the non-target trials.

    Raises
    ------
    ValueError
        As :func:`read_score_file`, and for a line without a label.
    """
    return split_scores(*read_score_file(path, key, require_labels=True))


def split_scores(trials, scores):
    """Target and non-target scores of labelled trials.

    Parameters
    ----------
    trials : sequence of Trial
    scores : array-like of shape (n_trials,)

    Returns
    -------
    tar : ndarray of shape (n_target,)
    non : ndarray of shape (n_nontarget,)

    Raises
    ------
    ValueError
        For a trial without a target/nontarget label.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = [t[2] if len(t) > 2 else None for t in trials]
    for t, label in zip(trials, labels):
        if label not in _LABELS:
            raise ValueError(f"trial '{t[0]} {t[1]}' has no target/nontarget label")
    is_tar = np.array([label == "target" for label in labels], dtype=bool)
    return scores[is_tar], scores[~is_tar]


def read_score_matrix(paths, key=None, *, require_labels=True):
    """Read the scores of several systems for the same trials, one column each.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Score files (:func:`read_score_file`).  Without a key, the first
        file's trials and labels are the trial list; every other file must
        score each of them (extra trials are skipped) and agree on labels.
    key : str, os.PathLike or dict, optional
        The trial list and labels for every file.
    require_labels : bool, default=True

    Returns
    -------
    trials : list of Trial
    scores : ndarray of shape (n_trials, n_systems)

    Raises
    ------
    ValueError
        As :func:`read_score_file`; a trial one file has no score for.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("no score files given")
    if key is not None and not isinstance(key, dict):
        key = read_key(key)
    trials, first = read_score_file(paths[0], key, require_labels=require_labels)
    columns = [first]
    for path in paths[1:]:
        other_trials, other = read_score_file(path, key)
        found = {(t.model, t.test): (t.label, s) for t, s in zip(other_trials, other)}
        col = np.empty(len(trials))
        for i, t in enumerate(trials):
            got = found.get((t.model, t.test))
            if got is None:
                raise ValueError(f"{path}: no score for trial '{t.model} {t.test}' of "
                                 f"{paths[0]}")
            if got[0] is not None and t.label is not None and got[0] != t.label:
                raise ValueError(f"{path}: trial '{t.model} {t.test}' is {got[0]!r} here but "
                                 f"{t.label!r} in {paths[0]}")
            col[i] = got[1]
        columns.append(col)
    return trials, np.column_stack(columns)


def write_score_file(path, trials, scores, fmt="ipem"):
    """Write scores atomically in ipem's or Kaldi's format.

    Parameters
    ----------
    path : str or os.PathLike
    trials : sequence of Trial or tuples
        ``(model, test[, label])``.
    scores : array-like of shape (n_trials,)
    fmt : {"ipem", "kaldi"}, default="ipem"
        ``"ipem"``: ``model test score [label]`` (see
        :func:`ipem.speaker.scoring.write_scores`); ``"kaldi"``: ``model
        test score``, labels left out (keep them in a key file).

    Returns
    -------
    str
        ``path``.
    """
    if fmt not in SCORE_FORMATS:
        raise ValueError(f"score format {fmt!r}: expected one of {', '.join(SCORE_FORMATS)}")
    if fmt == "kaldi":
        trials = [(t[0], t[1]) for t in trials]
    return write_scores(os.fspath(path), trials, scores)


# ---------------------------------------------------------------------------
# score normalisation and calibration
# ---------------------------------------------------------------------------

def _model_files(ids, models_dir, what, where):
    out = {}
    for mid in ids:
        try:
            path = Path(model_file(models_dir, mid))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if not path.exists():
            raise ValueError(f"{where}: no model file {path} for {what} {mid!r}")
        out[mid] = str(path)
    return out


def _first_seen(values):
    """Unique values in order of first appearance, and each value's position."""
    pos = {}
    index = np.array([pos.setdefault(v, len(pos)) for v in values], dtype=np.int64)
    return list(pos), index


def normalize(ubm, scores, cohort, models_dir, features_dir=None, *, method="s",
              cohort_models=None, top_n=200, key=None, root=None, fmt="htk", top_c=5, out=None,
              out_format="ipem", controller=None, progress=False, allow_pipes=False,
              data_dir=None):
    """Normalise trial scores with an impostor cohort (Z/T/ZT/S/AS-norm).

    The cohort scores are computed here, task-parallel over segments
    (:func:`ipem.speaker.normalization.score_matrix`): every enrolled model
    against the cohort segments (Z side), every test segment against the
    cohort models (T side), and for ZT-norm every cohort model against the
    other cohort segments.

    Parameters
    ----------
    ubm : ipem.UBMTrainer, str or any form :func:`ipem.speaker.map.ubm_params` accepts
    scores : str, os.PathLike or (trials, scores)
        A score file (:func:`read_score_file`) or its contents.
    cohort : str, os.PathLike or dict
        The impostor cohort: a list in the enrollment format, ``cohort_id
        utterance [utterance ...]`` per line (:func:`read_enrollment`), or
        its dict.  Each entry is one cohort member: its utterances form a
        cohort segment, and ``cohort_models/<cohort_id>.npz`` (adapted from
        the same list by :func:`adapt`) is its model.  Cohort speakers should
        not be in the trials.
    models_dir : str or os.PathLike
        The enrolled models, ``<model_id>.npz``.
    features_dir, root, fmt
        Where the test segments' and the cohort's features are, see
        :func:`feature_path`.
    data_dir : str, os.PathLike or ipem.io.DataDir, optional
        A Kaldi data directory holding the test segments and the cohort's
        utterances: the trials and the cohort list name its utterance ids
        (:func:`feature_source`).
    method : {"z", "t", "zt", "s", "as"}, default="s"
    cohort_models : str or os.PathLike, optional
        Directory of the cohort models; needed by every method but ``"z"``.
    top_n : int, default=200
        Cohort members per side for adaptive S-norm (``"as"``).
    key : str, os.PathLike or dict, optional
        For a score file: only its trials, labelled by it.
    top_c : int or None, default=5
        Top-C Gaussian selection of the cohort scoring (as for :func:`score`).
    out : str, optional
        Write the normalised scores here.
    out_format : {"ipem", "kaldi"}, default="ipem"
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:4"``) is started after the step's checks.
    progress : bool, default=False

    Returns
    -------
    trials : list of Trial
    scores : ndarray of shape (n_trials,), float64
        The normalised scores, in trial order.

    Raises
    ------
    ValueError
        An unknown method, a malformed score file or list, a missing model
        file (named), a cohort without spread.
    ipem.EngineValueError
        A bad feature or model file, found on an engine.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown score normalisation {method!r}; expected one of "
                         f"{', '.join(NORMALIZATIONS)}")
    if out is not None:
        check_output_file(out, "out")
    where = os.fspath(scores) if isinstance(scores, (str, os.PathLike)) else "scores"
    if isinstance(scores, (str, os.PathLike)):
        trials, raw = read_score_file(scores, key)
    else:
        trials, raw = scores
        trials, raw = list(trials), np.asarray(raw, dtype=np.float64)
    cohort_name = os.fspath(cohort) if isinstance(cohort, (str, os.PathLike)) else "cohort"
    features_dir = feature_source(features_dir, fmt, data_dir=data_dir, allow_pipes=allow_pipes)
    if isinstance(cohort, (str, os.PathLike)):
        cohort = read_enrollment(cohort, features_dir, root, fmt, allow_pipes=allow_pipes)
    if len(cohort) < 2:
        raise ValueError(f"{cohort_name}: a cohort needs at least 2 members, got {len(cohort)}")
    needs = NORMALIZATIONS[method]
    if "test" in needs and cohort_models is None:
        raise ValueError(f"{method}-norm needs the cohort models (cohort_models: a directory "
                         f"of <cohort_id>.npz, e.g. from adapt with {cohort_name})")
    model_ids, enroll_index = _first_seen(t[0] for t in trials)
    test_ids, test_index = _first_seen(t[1] for t in trials)
    segments = dict(cohort)                     # cohort id -> feature files (one segment)
    ubm = ubm_params(ubm)
    _check_headers(segments, ubm[1].shape[1], f"{cohort_name}: cohort member")
    if "enroll" in needs:
        models = _model_files(model_ids, models_dir, "model id", where)
    if "test" in needs:
        cmodels = _model_files(list(cohort), cohort_models, "cohort member", cohort_name)
        tests = {t: _test_segment(t, features_dir, root, fmt, allow_pipes, where)
                 for t in test_ids}
        _check_headers(tests, ubm[1].shape[1], f"{where}: test segment")
    mats = {}
    logger.info("%s-norm of %d trials with a cohort of %d (%s)", method, len(trials),
                len(cohort), cohort_name)
    with _running(controller) as ctrl:
        opts = dict(controller=ctrl, top_c=top_c, progress=progress)
        if "enroll" in needs:
            mats["enroll_cohort"] = score_matrix(ubm, models, segments, **opts)
        if "test" in needs:
            mats["test_cohort"] = score_matrix(ubm, cmodels, tests, **opts).T
            if "cohort" in needs:
                mats["cohort_cohort"] = score_matrix(ubm, cmodels, segments,
                                                     exclude=[(c, c) for c in cohort], **opts)
    normed = normalize_scores(method, raw, enroll_index=enroll_index, test_index=test_index,
                              top_n=top_n, **mats)
    if out is not None:
        write_score_file(out, trials, normed, out_format)
        logger.info("%s-normalised scores -> %s", method, out)
    return trials, normed


def calibrate(scores, *, key=None, prior=DEFAULT_PRIOR, out=None):
    """Train a calibration (one score file) or a linear fusion (several) on development trials.

    Parameters
    ----------
    scores : str, os.PathLike or sequence of them
        Development score files; several are fused (one weight each).
    key : str, os.PathLike or dict, optional
        Development key: the trials to train on and their labels (needed
        for Kaldi's unlabelled score files).
    prior : float, default=DEFAULT_PRIOR
        Training prior (see :class:`ipem.speaker.calibration.LogisticCalibration`).
    out : str, optional
        Save the calibration here as JSON.

    Returns
    -------
    LogisticCalibration
        Fitted; ``systems_`` names the score files.

    Raises
    ------
    ValueError
        A malformed score or key file, a trial without a label or score,
        only one class of trials.
    """
    if out is not None:
        check_output_file(out, "out")
    paths = [scores] if isinstance(scores, (str, os.PathLike)) else list(scores)
    trials, x = read_score_matrix(paths, key)
    is_tar = np.array([t.label == "target" for t in trials], dtype=bool)
    if is_tar.all() or not is_tar.any():
        raise ValueError(f"{os.fspath(paths[0])}: calibration needs both target and "
                         f"non-target trials (got {int(is_tar.sum())} target, "
                         f"{int((~is_tar).sum())} non-target)")
    cal = LogisticCalibration(prior=prior).fit(x[is_tar], x[~is_tar],
                                               systems=[os.fspath(p) for p in paths])
    if out is not None:
        cal.save(out)
        logger.info("calibration -> %s", out)
    return cal


def apply_calibration(calibration, scores, *, key=None, require_labels=False, out=None,
                      out_format="ipem"):
    """Calibrated (fused) LLRs of score files.

    Parameters
    ----------
    calibration : LogisticCalibration, str or os.PathLike
        A fitted calibration or its JSON file (:func:`calibrate`).
    scores : str, os.PathLike or sequence of them
        One score file per calibrated system, in the order of training.
    key : str, os.PathLike or dict, optional
        Only the key's trials, labelled by it.
    require_labels : bool, default=False
        Refuse trials without a label (to evaluate the result).
    out : str, optional
        Write the calibrated scores here.
    out_format : {"ipem", "kaldi"}, default="ipem"

    Returns
    -------
    trials : list of Trial
        Labels where the files or the key give them, else ``None``.
    llr : ndarray of shape (n_trials,)

    Raises
    ------
    ValueError
        A malformed calibration or score file; a number of score files other
        than the calibration's number of systems.
    """
    if out is not None:
        check_output_file(out, "out")
    source = "calibration"
    if isinstance(calibration, (str, os.PathLike)):
        source = os.fspath(calibration)
        calibration = LogisticCalibration.load(calibration)
    paths = [scores] if isinstance(scores, (str, os.PathLike)) else list(scores)
    if len(paths) != calibration.n_systems_:
        raise ValueError(f"{source} fuses {calibration.n_systems_} score files, got "
                         f"{len(paths)}")
    trials, x = read_score_matrix(paths, key, require_labels=require_labels)
    llr = calibration.transform(x)
    if out is not None:
        write_score_file(out, trials, llr, out_format)
        logger.info("calibrated scores -> %s", out)
    return trials, llr


# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------

def evaluate(tar, non, *, source=None):
    """EER, ROCCH-EER, minDCF and actDCF (SRE 2008 and 2010), Cllr and minCllr.

    Parameters
    ----------
    tar : array_like of shape (n_target,)
        Scores of target trials.
    non : array_like of shape (n_nontarget,)
        Scores of non-target trials.
    source : str, optional
        Named in the error message (e.g. the score file).

    Returns
    -------
    dict
        ``n_target``, ``n_nontarget``, ``eer``, ``rocch_eer``,
        ``min_dcf_sre08``, ``act_dcf_sre08``, ``min_dcf_sre10``,
        ``act_dcf_sre10`` (rates as fractions; DCFs normalised; actDCF at the
        Bayes threshold, i.e. the scores read as LLRs), ``cllr`` and
        ``min_cllr`` (bits).

    Raises
    ------
    ValueError
        If either class has no trial.
    """
    tar, non = np.asarray(tar, dtype=np.float64), np.asarray(non, dtype=np.float64)
    if not tar.size or not non.size:
        raise ValueError(f"{source or 'scores'}: needs both target and non-target trials "
                         f"(got {tar.size} target, {non.size} non-target)")
    out = {"n_target": int(tar.size), "n_nontarget": int(non.size),
           "eer": _metrics.compute_eer(tar, non), "rocch_eer": _metrics.rocch_eer(tar, non)}
    for name, op in (("sre08", _metrics.SRE2008), ("sre10", _metrics.SRE2010)):
        out[f"min_dcf_{name}"] = _metrics.min_dcf(tar, non, *op)[0]
        out[f"act_dcf_{name}"] = _metrics.act_dcf(tar, non, *op)
    out["cllr"] = _metrics.cllr(tar, non)
    out["min_cllr"] = _metrics.min_cllr(tar, non)
    return out


def format_metrics(results):
    """The report ``ipem evaluate`` prints, five lines.

    Parameters
    ----------
    results : dict
        As returned by :func:`evaluate`.

    Returns
    -------
    str
    """
    r = results
    return (f"trials: {r['n_target']} target, {r['n_nontarget']} non-target\n"
            f"EER        {100 * r['eer']:6.2f} %   (ROCCH-EER {100 * r['rocch_eer']:.2f} %)\n"
            f"minDCF     {r['min_dcf_sre08']:.4f} (SRE08: P_tar=0.01, C_miss=10, C_fa=1)   "
            f"{r['min_dcf_sre10']:.4f} (SRE10: P_tar=0.001, C_miss=1, C_fa=1)\n"
            f"actDCF     {r['act_dcf_sre08']:.4f} (SRE08)   {r['act_dcf_sre10']:.4f} (SRE10)\n"
            f"Cllr       {r['cllr']:.4f} bits   (minCllr {r['min_cllr']:.4f} bits)")
