"""The extraction step: audio files -> feature files (MFCC+deltas, VAD, CMVN).

One load-balanced task per audio file (:func:`ipem.speaker.frontend.extract_many`),
or, into Kaldi archives, one task per batch of utterances, each writing its
own ``feats.<n>.ark`` where it runs; a data directory's ``wav.scp`` may name
commands (``... |``) whose output is the audio.  All or nothing
(:func:`ipem.io.atomic.atomic_directory`).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

from .._optional import require
from ..io import list_features, write_data_dir
from ..io.atomic import atomic_directory
from ..io.datadir import read_data_dir
from ..io.kaldi import is_pipe
from ..io.manifests import write_manifest
from ..io.preflight import check_input_file, check_output_dir
from ..speaker.frontend import extract_many
from ..speaker.utterances import audio_files, utterance_id
from .cluster import running

logger = logging.getLogger(__name__)

__all__ = ["extract", "frontend_options"]


#: Front-end options added after feature manifests were first written, with the value ipem
#: computed with before each existed: what a manifest without the option was made with.
UNRECORDED = {"c0": "band", "vad_energy": "band"}


def frontend_options(sample_rate, frontend):
    """The front-end options of an extraction, every default resolved (for its manifest).

    Parameters
    ----------
    sample_rate : int
    frontend : dict
        Keyword arguments of :func:`ipem.speaker.frontend.extract_features`.

    Returns
    -------
    dict
        Every option of :func:`~ipem.speaker.frontend.extract_features` (JSON
        types): ``vad=True`` is ``"gmm"``, ``variance_norm`` folded into
        ``norm``, the filterbank band in Hz; two extractions have the same
        dict exactly when they compute the same features.
    """
    import inspect

    from ..speaker.dsp import band_edges
    from ..speaker.frontend import extract_features
    from ..speaker.mfcc import default_n_filters

    opts = {name: p.default for name, p in inspect.signature(extract_features).parameters.items()
            if p.default is not inspect.Parameter.empty}
    opts.update(frontend)
    opts["sample_rate"] = int(sample_rate)
    opts["vad"] = "gmm" if opts["vad"] is True else (opts["vad"] or "none")
    if not opts.pop("variance_norm", True):
        opts["norm"] = {"cmvn": "cmn", "sliding_cmvn": "sliding_cmn"}.get(opts["norm"],
                                                                          opts["norm"])
    if opts.get("n_filters") is None:
        opts["n_filters"] = default_n_filters(opts["sample_rate"])
    low, high = band_edges(opts["sample_rate"], opts["low_freq"], opts["high_freq"])
    opts["low_freq"], opts["high_freq"] = float(low), float(high)
    return json.loads(json.dumps(opts, default=str))


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
        (:meth:`ipem.speaker.FeatureSource.path`).  With ``fmt="kaldi"`` it holds archives
        ``feats.<n>.ark`` (one per batch of utterances, written where the
        batch ran) and ``feats.scp`` naming them by absolute path; with a
        ``data_dir`` it becomes a data directory: ``utt2spk``, ``spk2utt``
        and ``wav.scp`` are copied into it.
    lists : sequence of path-like, optional
        Only the audio named in these lists (see :func:`ipem.speaker.utterances.audio_files`).
    fmt : {"htk", "npy", "h5", "kaldi"}, optional
        Default ``"kaldi"`` with a ``data_dir`` (the only format there),
        ``"htk"`` otherwise.  Kaldi utterance ids of corpus audio are
        :func:`ipem.speaker.utterances.utterance_id` (``wav/spk/utt``).
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
        :func:`ipem.speaker.utterances.audio_files`; ``ref.n_frames`` counts the speech frames.

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
    with running(controller) as ctrl, atomic_directory(final) as tmp:
        written = extract_many([root / a for a in audio], tmp, fmt, root=root,
                               controller=ctrl, progress=progress,
                               sample_rate=sample_rate, **frontend)
        # the directory's record: front-end, ipem version, digests of audio and features
        write_manifest(tmp, {os.path.relpath(p, tmp).replace(os.sep, "/"): root / a
                             for p, a in zip(written, audio)},
                       frontend_options(sample_rate, frontend), final=final)
    written = [final / Path(p).relative_to(tmp) for p in written]
    refs = list_features([os.fspath(p) for p in written], fmt)
    logger.info("extracted %d files, %d speech frames", len(refs),
                sum(r.n_frames for r in refs))
    return refs


#: Tables a data directory's extraction copies into its output data directory.
_COPIED_TABLES = ("utt2spk", "spk2utt", "wav.scp", "segments")


def _extract_kaldi(root, out_dir, lists, data_dir, controller, progress, allow_pipes, kwargs):
    """:func:`extract` into Kaldi archives: batches of utterances, one archive each."""
    import shutil

    for module in ("soundfile", "python_speech_features", "kaldiio"):
        require(module, "to extract features into Kaldi archives")
    if data_dir is not None:
        if root is not None or lists:
            raise ValueError("extract: give either a data directory or a corpus root (with "
                             "lists), not both")
        data = read_data_dir(data_dir, need=("wav.scp",), allow_pipes=allow_pipes)
        utts = []
        # with a segments table, each utterance is a span of a wav.scp recording
        spans = data.segments or {utt: (utt, None, None) for utt in data.wav}
        for utt, (rec, start, end) in spans.items():
            audio = data.wav[rec]
            where = f"{data.where('wav.scp', rec)}: utterance {utt}"
            if start is not None:
                where = (f"{data.where('segments', utt)}: utterance {utt} ({rec}, "
                         f"{start:g}-{end:g} s)")
            if not is_pipe(audio):
                try:
                    check_input_file(audio, "audio file")
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                audio = os.path.abspath(audio)
            utts.append((utt, audio, where, start, end))
        what = data_dir
    else:
        if root is None:
            raise ValueError("extract: give the corpus root or a Kaldi data directory")
        root = Path(root).absolute()
        utts = [(utterance_id(a), str(root / a), a, None, None)
                for a in audio_files(root, lists, allow_pipes=allow_pipes)]
        what = root
    final = os.path.abspath(os.fspath(out_dir))
    logger.info("extracting features of %d utterances of %s -> %s (Kaldi ark/scp)", len(utts),
                what, out_dir)
    with running(controller) as ctrl, atomic_directory(final) as tmp:
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
        write_data_dir(tmp, feats={utt: index[utt] for utt, *_ in utts})
        files = {f"feats.{b.part}.ark": None for b in batches}
        files["feats.scp"] = None
        write_manifest(tmp, files, frontend_options(kwargs["sample_rate"], kwargs), final=final,
                       utterances={utt: (f"feats.{b.part}.ark", audio, start, end)
                                   for b in batches for utt, audio, _, start, end in b.utts})
        if data_dir is not None:
            for table in _COPIED_TABLES:
                if os.path.exists(data.file(table)):
                    shutil.copyfile(data.file(table), os.path.join(tmp, table))
    refs = list_features(os.path.join(final, "feats.scp"))
    logger.info("extracted %d utterances, %d speech frames", len(refs),
                sum(r.n_frames for r in refs))
    return refs


class _Batch(NamedTuple):
    """Utterances ``(utt, audio, where, start, end)`` extracted into
    ``<directory>/feats.<part>.ark`` (``start``/``end`` in seconds: a segment of the audio;
    None: all of it)."""

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


def _segment_audio(path, start, end, directory):
    """Samples ``start``-``end`` s of an audio file (``end`` -1: to its end) in a temporary WAV."""
    import tempfile

    import soundfile

    info = soundfile.info(path)
    first = int(round(start * info.samplerate))
    last = info.frames if end == -1 else min(int(round(end * info.samplerate)), info.frames)
    if first >= last:
        raise ValueError("the segment starts after the recording's end "
                         f"({info.frames / info.samplerate:g} s)")
    samples, rate = soundfile.read(path, start=first, stop=last, dtype="float32",
                                   always_2d=True)
    fd, cut = tempfile.mkstemp(suffix=".wav", prefix=".segment.", dir=directory)
    os.close(fd)
    try:
        soundfile.write(cut, samples, rate, subtype="FLOAT")
    except BaseException:
        os.unlink(cut)
        raise
    return cut


def _extract_ark_task(batch, kwargs):
    """One batch of :func:`extract` into ``feats.<n>.ark`` (runs where the task runs).

    Returns ``[(utt, offset), ...]``; the scp of the batch is written beside
    its archive for the client to merge.
    """
    from ..io.kaldi import write_kaldi
    from ..speaker.frontend import extract_features

    part, utts, directory = batch.part, batch.utts, batch.directory
    mats = {}
    for utt, audio, where, start, end in utts:
        source = _audio_of_command(audio, directory, where) if is_pipe(audio) else audio
        cut = None
        try:
            if start is not None:
                cut = _segment_audio(source, start, end, directory)
            mats[utt] = extract_features(cut or source, **kwargs)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        finally:
            if source is not audio:
                os.unlink(source)
            if cut is not None:
                os.unlink(cut)
    ark = os.path.join(directory, f"feats.{part}.ark")
    refs = write_kaldi(ark, os.path.join(directory, f"feats.{part}.scp"), mats)
    return [(ref.key, int(ref.path.rsplit(":", 1)[1])) for ref in refs]
