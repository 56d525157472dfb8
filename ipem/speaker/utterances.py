"""Where the features of list entries are: :class:`FeatureSource`, audio files, utterance ids.

Lists name utterances by their audio path relative to the corpus root
(``wav/spk/utt.wav``); :meth:`FeatureSource.path` maps such an entry to its
feature file under the feature directory (``FEATS/wav/spk/utt.htk``).  An
entry that already names a feature file is used as it is; with a Kaldi data
directory, entries are its utterance ids (or audio paths, whose id is
:func:`utterance_id`).

The five things that say where features are -- the feature directory, the
corpus root, the feature format, a Kaldi data directory and whether shell
commands are accepted -- travel together as one :class:`FeatureSource`,
resolved once (a data directory is read once, on first use).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

from ..io import FeatureRef, is_list_file, is_scp_file, list_features, read_list, read_scp
from ..io import formats
from ..io.datadir import DataDir, read_data_dir
from ..io.kaldi import is_pipe
from ..io.lists import PIPES_HINT, expand_sources, read_table
from ..io.models import check_model_id
from ..io.preflight import check_input_file

__all__ = ["AUDIO_SUFFIXES", "FeatureSource", "audio_files", "utterance_id"]

#: File suffixes taken for audio (anything else in a list names a feature file).
AUDIO_SUFFIXES = (".wav", ".flac", ".sph", ".ogg")


def _is_audio(entry):
    return Path(entry).suffix.lower() in AUDIO_SUFFIXES


def _relative_to_root(p, root):
    """``p`` (absolute) relative to ``root``, or None when it is outside."""
    for base in (Path(root).absolute(), Path(root).resolve()):
        try:
            return p.relative_to(base)
        except ValueError:
            pass
    return None


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


@dataclasses.dataclass(frozen=True)
class FeatureSource:
    """Where a step finds the features of list entries.

    Parameters
    ----------
    features_dir : str, os.PathLike or ipem.io.DataDir, optional
        Feature directory from :func:`ipem.steps.extract`.  With
        ``fmt="kaldi"`` it is read as a Kaldi data directory (its
        ``feats.scp``).
    root : str or os.PathLike, optional
        Corpus directory the list entries (audio paths) are relative to.
    fmt : {"htk", "npy", "h5", "kaldi"}, default="htk"
        Feature format; its suffix (``ipem.io.formats``) is the feature
        files' suffix.
    data_dir : str, os.PathLike or ipem.io.DataDir, optional
        A Kaldi data directory whose ``feats.scp`` names the features; list
        entries are then its utterance ids.  Takes precedence over
        ``features_dir``.
    allow_pipes : bool, default=False
        Accept shell commands (Kaldi pipes, ``cmd |``) in lists, scp files
        and ``feats.scp``; they run through a shell when the features are
        read.  By default they are refused, naming the file and line.

    Examples
    --------
    >>> FeatureSource("feats", "corpus").path("wav/us1/us1_test_00.wav")
    'feats/wav/us1/us1_test_00.htk'
    >>> FeatureSource("feats", "corpus").path("other/x.npy")
    'corpus/other/x.npy'
    """

    features_dir: Any = None
    root: Any = None
    fmt: str = "htk"
    data_dir: Any = None
    allow_pipes: bool = False

    @functools.cached_property
    def location(self):
        """The feature directory, or the :class:`ipem.io.DataDir` read (once) from
        ``data_dir`` (or from ``features_dir`` with ``fmt="kaldi"``); None if neither.

        Raises
        ------
        ValueError
            A data directory that cannot be read, or whose tables disagree
            (file and line named, :func:`ipem.io.read_data_dir`).
        """
        if isinstance(self.data_dir, DataDir):
            return self.data_dir
        if self.data_dir is not None:
            return read_data_dir(self.data_dir, need=("feats.scp",),
                                 allow_pipes=self.allow_pipes)
        if self.features_dir is None or isinstance(self.features_dir, DataDir):
            return self.features_dir
        if self.fmt == "kaldi":
            return read_data_dir(self.features_dir, need=("feats.scp",),
                                 allow_pipes=self.allow_pipes)
        return self.features_dir

    @property
    def is_data_dir(self):
        """Whether the features are those of a Kaldi data directory (entries: utterance ids)."""
        return isinstance(self.location, DataDir)

    def path(self, entry):
        """The feature file of a list entry.

        Parameters
        ----------
        entry : str or os.PathLike
            An audio path (relative to ``root``, or absolute under it), or
            the path of a feature file; with a data directory, an utterance
            id of its ``feats.scp`` (or an audio path, whose id is
            :func:`utterance_id`).

        Returns
        -------
        str or FeatureRef
            ``features_dir/<entry with the format's suffix>`` for audio; for
            a feature file, ``entry`` itself (joined to ``root`` when
            relative); for a data directory, the utterance's
            :class:`ipem.io.FeatureRef`.

        Raises
        ------
        ValueError
            For an absolute audio path outside ``root``, an audio path with
            ``..`` (its features cannot be under ``features_dir``), a shell
            command when ``allow_pipes`` is false, an utterance id not in the
            data directory's ``feats.scp``.
        """
        entry = os.fspath(entry)
        features_dir, root = self.location, self.root
        if isinstance(features_dir, DataDir):
            refs = features_dir.feature_refs()
            if entry not in refs and _is_audio(entry):
                entry = utterance_id(entry, root)
            return features_dir.feature_ref(entry)
        if is_pipe(entry):
            if not self.allow_pipes:
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
        return str(Path(features_dir) / p.with_suffix(formats.suffix(self.fmt)))

    def _listed(self, entry, lst, lineno):
        """:meth:`path` of a list entry; a refusal names the list and line."""
        try:
            return self.path(entry)
        except ValueError as exc:
            raise ValueError(f"{os.fspath(lst)}, line {lineno}: {exc}") from None

    def files(self, lists=None):
        """Feature files of the utterances named in lists (e.g. ``ubm.lst``).

        Parameters
        ----------
        lists : str, os.PathLike or sequence of them, optional
            Utterance lists (every field of every line is an utterance, see
            :meth:`path`) or Kaldi ``feats.scp`` files (kept as they are:
            the UBM trainer expands them).  With a data directory, lists of
            its utterance ids; without lists, every utterance of its
            ``feats.scp``.

        Returns
        -------
        list of str (list of FeatureRef with ``allow_pipes`` or a data directory)
            Feature file paths (and ``.scp`` paths), in list order.  With
            ``allow_pipes`` the headers are read here
            (:func:`ipem.io.list_features`), so that nothing downstream
            refuses the commands allowed here.

        Raises
        ------
        ValueError
            For an empty list, an audio path outside ``root`` or with
            ``..``, a shell command when ``allow_pipes`` is false, or an
            utterance listed twice (the list file and line are named, both
            lines for a repeat).
        ipem.io.FeatureFileError
            For a list that cannot be read (a ValueError).
        """
        location, allow_pipes = self.location, self.allow_pipes
        if isinstance(lists, (str, os.PathLike)):
            lists = [lists]
        if not lists:
            if not isinstance(location, DataDir):
                raise ValueError("no utterance lists given (or a Kaldi data directory)")
            return list(location.feature_refs().values())
        files, seen = [], {}
        for lst in lists:
            if is_scp_file(lst) and not isinstance(location, DataDir):
                read_scp(lst, allow_pipes=allow_pipes)  # a command is refused now, with its line
                _once(os.fspath(lst), seen, lst, None, os.fspath(lst))
                files.append(os.fspath(lst))
                continue
            for n, fields in read_list(lst, allow_pipes=allow_pipes):
                for entry in fields:
                    f = self._listed(entry, lst, n)
                    _once(f, seen, lst, n, entry)
                    files.append(f)
        if allow_pipes and not isinstance(location, DataDir):
            return list_features(files, allow_pipes=True)
        return files

    def enrollment(self, path):
        """Read an enrollment list: the utterances of each model.

        Every form the field writes is read: ``model_id utterance
        [utterance ...]`` lines, one line per model or one ``(model,
        utterance)`` pair per line (SIDEKIT's IdMap text, ``leftid
        rightid``) or any mix, the lines of a model merged in file order;
        and NIST SRE enrollment tables (``modelid<TAB>segmentid<TAB>side``
        under a header line, :func:`ipem.io.lists.read_table`).

        Parameters
        ----------
        path : str or os.PathLike
            The list; a path with spaces is quoted (``spk1 "wav/my
            file.wav"``).  An utterance may be a list of feature files
            (``.scp``, ``.lst``); it is read now, so that a command in it is
            refused before any work (with ``allow_pipes`` it is expanded
            here into :class:`ipem.io.FeatureRef` objects).

        Returns
        -------
        dict
            ``model_id -> list of feature file paths`` (or FeatureRefs), in
            file order.

        Raises
        ------
        ValueError
            For an empty list, a line without an utterance, a model id that
            cannot name a model file (``/``, ``\\``, ``..``), an utterance
            given twice to one model (both line numbers given), an audio
            path outside ``root`` or with ``..``, a shell command when
            ``allow_pipes`` is false (the message gives the file and line
            number).
        """
        path = os.fspath(path)
        allow_pipes = self.allow_pipes
        out, seen_of = {}, {}
        for n, fields in read_table(path, ("model", "segment"), allow_pipes=allow_pipes):
            if len(fields) < 2:
                raise ValueError(f"{path}, line {n}: expected 'model_id utterance...', "
                                 f"got only {fields[0]!r}")
            try:
                check_model_id(fields[0])
            except ValueError as exc:
                raise ValueError(f"{path}, line {n}: {exc}") from None
            utts, seen = out.setdefault(fields[0], []), seen_of.setdefault(fields[0], {})
            for u in fields[1:]:
                f = self._listed(u, path, n)
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

    def utterances(self, lists):
        """``{entry: feature file}`` of every utterance the lists name (one id per utterance).

        Parameters
        ----------
        lists : str, os.PathLike or sequence of them
            Utterance lists (every field of every line is an utterance, as
            ``ubm.lst``); the entries become the ids (of i-vectors, say), as
            trial lists name test segments.

        Returns
        -------
        dict
            In list order.

        Raises
        ------
        ValueError
            An utterance listed twice (both places named), or a bad entry.
        """
        if isinstance(lists, (str, os.PathLike)):
            lists = [lists]
        out, seen = {}, {}
        for lst in lists:
            for lineno, fields in read_list(lst, allow_pipes=self.allow_pipes):
                for entry in fields:
                    if entry in seen:
                        raise ValueError(f"{os.fspath(lst)}, line {lineno}: utterance {entry} "
                                         f"is listed twice (first at {seen[entry]})")
                    seen[entry] = f"{os.fspath(lst)}, line {lineno}"
                    out[entry] = self._listed(entry, lst, lineno)
        if not out:
            raise ValueError("no utterances in the lists")
        return out

    def speakers(self):
        """``speaker -> FeatureRefs`` of the data directory's speakers, and their table.

        Returns
        -------
        speakers : dict
            ``speaker -> list of FeatureRef`` (speaker ids checked as model ids).
        table : str
            The file the speakers come from (``spk2utt``, else ``utt2spk``).

        Raises
        ------
        ValueError
            Without a data directory, or one without speakers; a speaker id
            that cannot name a model file (file and line named).
        """
        data = self.location
        if not isinstance(data, DataDir):
            raise ValueError("speakers come from a Kaldi data directory (data_dir)")
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


def utterance_id(entry, root=None):
    """The Kaldi utterance id ipem gives an audio file: its path under ``root``, no suffix.

    :func:`ipem.steps.extract` with ``fmt="kaldi"`` and a corpus root names
    the matrices so, and :meth:`FeatureSource.path` finds an audio list entry
    in a ``feats.scp`` so.

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
