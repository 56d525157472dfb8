"""Kaldi data directories: ``wav.scp``, ``feats.scp``, ``utt2spk``, ``spk2utt``.

A Kaldi data directory describes a set of utterances with small text tables,
one entry per line (``key value...``, fields separated by whitespace):

``wav.scp``
    ``utt-id audio`` -- the audio of each utterance: a file path, or with
    ``allow_pipes=True`` a shell command ending in ``|`` (``sox in.sph -t wav
    - |``) whose output is the audio.
``feats.scp``
    ``utt-id rxspecifier`` -- the features of each utterance in a Kaldi
    archive (``/abs/raw_mfcc.1.ark:1234``).
``utt2spk``
    ``utt-id spk-id`` -- the speaker of each utterance.
``spk2utt``
    ``spk-id utt-id [utt-id ...]`` -- the utterances of each speaker (the
    inverse of ``utt2spk``; derived from it when missing).

``segments``
    ``utt-id recording-id start end`` -- utterances cut out of longer
    recordings: ``wav.scp`` is then keyed by recording id, and each
    utterance is the part of its recording from ``start`` to ``end``
    seconds (``end`` -1: to the end of the recording); ``ipem extract``
    extracts each segment.

:func:`read_data_dir` reads the tables that exist and checks them against
each other before any work: an utterance or speaker given twice, a bad line,
an utterance of ``utt2spk`` without features in ``feats.scp`` (or the other
way round), ``spk2utt`` and ``utt2spk`` disagreeing.  Every problem is a
one-line :class:`~ipem.io.FeatureFileError` (a ValueError) naming the file
and, where there is one, the line.  Shell commands in ``wav.scp`` and
``feats.scp`` are refused (naming file and line) unless ``allow_pipes``
(see :mod:`ipem.io.lists`).  Relative paths inside the tables are relative
to the working directory, as in Kaldi.

:func:`write_data_dir` writes such tables (atomically, each file), e.g. a
data directory made from a file list, or the output of ``ipem extract
--data-dir``.
"""
from __future__ import annotations

import logging
import math
import os
import re
from typing import Iterable, Mapping

from .atomic import write_text_atomic
from .features import list_features
from .lists import read_lines, read_scp
from .refs import FeatureFileError, FeatureRef, PathLike

__all__ = ["DataDir", "TABLES", "read_data_dir", "write_data_dir"]

logger = logging.getLogger(__name__)

#: The tables ipem reads from a data directory.
TABLES = ("wav.scp", "feats.scp", "utt2spk", "spk2utt")
_SCP_TABLES = ("wav.scp", "feats.scp")


class DataDir:
    """The tables of a Kaldi data directory, read and checked by :func:`read_data_dir`.

    Attributes
    ----------
    path : str
        The directory, as given.
    wav : dict or None
        ``utt-id -> audio`` (path or command, as written), in file order;
        ``None`` without ``wav.scp``.
    feats : dict or None
        ``utt-id -> rxspecifier`` of ``feats.scp``; ``None`` without it.
    utt2spk : dict or None
        ``utt-id -> spk-id``; ``None`` without ``utt2spk``.
    segments : dict or None
        ``utt-id -> (recording-id, start, end)`` (seconds; ``end`` -1 for
        the end of the recording) from ``segments``; ``None`` without it.
    spk2utt : dict or None
        ``spk-id -> list of utt-ids`` from ``spk2utt``; ``None`` without it.
    allow_pipes : bool
        Whether shell commands were accepted in the scp files.
    """

    def __init__(self, path, *, wav=None, feats=None, utt2spk=None, spk2utt=None,
                 lines=None, allow_pipes=False, segments=None):
        self.path = os.fspath(path)
        self.segments = segments
        self.wav, self.feats, self.utt2spk, self.spk2utt = wav, feats, utt2spk, spk2utt
        self.allow_pipes = allow_pipes
        self._lines = lines or {}      # table -> {key: line number}
        self._refs = None

    def __repr__(self):
        have = ", ".join(f"{t} ({len(v)})" for t, v in zip(
            TABLES, (self.wav, self.feats, self.utt2spk, self.spk2utt)) if v is not None)
        return f"DataDir({self.path!r}: {have})"

    def file(self, table: str) -> str:
        """Path of one of the :data:`TABLES` in this directory."""
        return os.path.join(self.path, table)

    def where(self, table: str, key: str) -> str:
        """``"<dir>/<table>: line <n>"`` for the line of ``key`` (file alone if unknown)."""
        n = self._lines.get(table, {}).get(key)
        return self.file(table) if n is None else f"{self.file(table)}: line {n}"

    def utterances(self) -> list[str]:
        """Utterance ids in file order (``feats.scp``, else ``wav.scp``, else ``utt2spk``)."""
        for table in (self.feats, self.segments, self.wav, self.utt2spk):
            if table is not None:
                return list(table)
        return [u for utts in self.spk2utt.values() for u in utts]

    def speakers(self) -> dict[str, list[str]]:
        """``spk-id -> utt-ids``: ``spk2utt``, or ``utt2spk`` inverted (first-seen order).

        Raises
        ------
        FeatureFileError
            If the directory has neither ``spk2utt`` nor ``utt2spk``.
        """
        if self.spk2utt is not None:
            return {spk: list(utts) for spk, utts in self.spk2utt.items()}
        if self.utt2spk is None:
            raise FeatureFileError(self.path, "no spk2utt or utt2spk: the speakers of the "
                                   "utterances are not known")
        out: dict[str, list[str]] = {}
        for utt, spk in self.utt2spk.items():
            out.setdefault(spk, []).append(utt)
        return out

    def feature_refs(self) -> dict[str, FeatureRef]:
        """``utt-id -> FeatureRef`` of every ``feats.scp`` entry (headers read once, here).

        Raises
        ------
        FeatureFileError
            Without ``feats.scp``; for a missing, truncated or malformed
            archive entry, or a dimension differing from the others (the
            message names ``feats.scp`` and the line, then the archive).
        """
        if self._refs is None:
            scp = self.file("feats.scp")
            if self.feats is None:
                raise FeatureFileError(self.path, "no feats.scp: extract features first "
                                       "(ipem extract --data-dir ... --format kaldi)")
            try:
                refs = list_features(scp, allow_pipes=self.allow_pipes)
            except FeatureFileError as exc:
                if exc.key in self.feats:
                    raise FeatureFileError(self.where("feats.scp", exc.key), str(exc)) from None
                raise
            self._refs = {ref.key: ref for ref in refs}
        return self._refs

    def feature_ref(self, utt: str) -> FeatureRef:
        """The features of utterance ``utt``; a ValueError names ``feats.scp`` if it has none."""
        refs = self.feature_refs()
        try:
            return refs[utt]
        except KeyError:
            raise FeatureFileError(self.file("feats.scp"),
                                   f"no utterance {utt!r} in it") from None

    def speaker_features(self) -> dict[str, list[FeatureRef]]:
        """``spk-id -> FeatureRefs`` of the speaker's utterances (:meth:`speakers` order)."""
        refs = self.feature_refs()
        out = {}
        for spk, utts in self.speakers().items():
            missing = next((u for u in utts if u not in refs), None)
            if missing is not None:    # only when spk2utt came without utt2spk
                table = "spk2utt" if self.spk2utt is not None else "utt2spk"
                raise FeatureFileError(self.where(table, spk if table == "spk2utt" else missing),
                                       f"utterance {missing!r} has no features in "
                                       f"{self.file('feats.scp')}")
            out[spk] = [refs[u] for u in utts]
        return out


def _table(path: str, lines: dict, *, allow_pipes: bool) -> dict:
    """A Kaldi script file (``wav.scp``, ``feats.scp``) as ``key -> rest of line``."""
    out = {}
    for n, key, value in read_scp(path, allow_pipes=allow_pipes):
        out[key] = value
        lines[key] = n
    if not out:
        raise FeatureFileError(path, "no entries")
    return out


def _utt2spk(path: str, lines: dict) -> dict:
    out = {}
    for n, line in read_lines(path, allow_pipes=True):   # ids only: nothing is run
        fields = line.split()
        if len(fields) != 2:
            raise FeatureFileError(path, f"line {n}: expected 'utt-id spk-id', got "
                                   f"{len(fields)} fields")
        utt, spk = fields
        if utt in out:
            raise FeatureFileError(path, f"line {n}: duplicate utterance id {utt!r} (first on "
                                   f"line {lines[utt]})")
        out[utt], lines[utt] = spk, n
    return out


def _spk2utt(path: str, lines: dict) -> dict:
    out, line_of_utt = {}, {}
    for n, line in read_lines(path, allow_pipes=True):
        fields = line.split()
        if len(fields) < 2:
            raise FeatureFileError(path, f"line {n}: expected 'spk-id utt-id [utt-id ...]', "
                                   f"got only {fields[0]!r}")
        spk, utts = fields[0], fields[1:]
        if spk in out:
            raise FeatureFileError(path, f"line {n}: duplicate speaker id {spk!r} (first on "
                                   f"line {lines[spk]})")
        for utt in utts:
            if utt in line_of_utt:
                raise FeatureFileError(path, f"line {n}: duplicate utterance id {utt!r} "
                                       f"(first on line {line_of_utt[utt]})")
            line_of_utt[utt] = n
        out[spk], lines[spk] = utts, n
    return out


def _check_same_utterances(d: DataDir, a: str, table_a: dict, b: str, table_b: dict) -> None:
    """Every utterance of table ``a`` is in table ``b`` and the other way round."""
    for table, name, other, other_name in ((table_a, a, table_b, b), (table_b, b, table_a, a)):
        missing = next((u for u in table if u not in other), None)
        if missing is not None:
            what = "has no features in" if other_name == "feats.scp" else "is not in"
            raise FeatureFileError(d.where(name, missing), f"utterance {missing!r} {what} "
                                   f"{d.file(other_name)}")


def _check_speakers(d: DataDir) -> None:
    """``spk2utt`` and ``utt2spk`` say the same."""
    for spk, utts in d.spk2utt.items():
        for utt in utts:
            said = d.utt2spk.get(utt)
            if said is None:
                raise FeatureFileError(d.where("spk2utt", spk), f"utterance {utt!r} of speaker "
                                       f"{spk!r} is not in {d.file('utt2spk')}")
            if said != spk:
                raise FeatureFileError(d.where("spk2utt", spk), f"utterance {utt!r} is under "
                                       f"speaker {spk!r}, but {d.where('utt2spk', utt)} says "
                                       f"{said!r}")
    listed = {u for utts in d.spk2utt.values() for u in utts}
    missing = next((u for u in d.utt2spk if u not in listed), None)
    if missing is not None:
        raise FeatureFileError(d.where("utt2spk", missing), f"utterance {missing!r} (speaker "
                               f"{d.utt2spk[missing]!r}) is missing from {d.file('spk2utt')}")


def read_data_dir(path: PathLike, *, need: Iterable[str] = (),
                  allow_pipes: bool = False) -> DataDir:
    """Read and check a Kaldi data directory.

    Parameters
    ----------
    path : str or os.PathLike
        The directory.
    need : iterable of str, optional
        Tables that must be there (out of :data:`TABLES`; ``"speakers"`` for
        ``spk2utt`` or ``utt2spk``).  Whatever else of :data:`TABLES` is
        there is read and checked too.  At least one of ``wav.scp`` and
        ``feats.scp`` is always needed.
    allow_pipes : bool, default=False
        Accept shell commands (``cmd |``) in ``wav.scp`` and ``feats.scp``;
        they run through a shell when the audio or features are read.  When
        ``need`` names tables, only those are checked for commands (the
        features of ``ipem extract`` keep a ``wav.scp`` of ``sox ... |``
        lines beside their ``feats.scp``; reading the features runs none).

    Returns
    -------
    DataDir

    Raises
    ------
    FeatureFileError
        A ValueError naming the file and line: the directory or a needed
        table is missing, a line is malformed, an id is given twice, a shell
        command without ``allow_pipes``, ``utt2spk`` and ``feats.scp`` (or
        ``wav.scp``) holding different utterances, ``spk2utt`` disagreeing
        with ``utt2spk``, a ``segments`` line naming a recording ``wav.scp``
        does not have, or a segment that ends before it starts.
    """
    path = os.fspath(path)
    need = set(need)
    unknown = need - set(TABLES) - {"speakers"}
    if unknown:
        raise ValueError(f"unknown data directory tables {sorted(unknown)}; expected some of "
                         f"{TABLES} or 'speakers'")
    if not os.path.isdir(path):
        raise FeatureFileError(path, "not a directory (a Kaldi data directory was expected)"
                               if os.path.exists(path) else "no such Kaldi data directory")
    present = {t for t in TABLES if os.path.isfile(os.path.join(path, t))}
    missing = sorted(need - {"speakers"} - present)
    if missing:
        raise FeatureFileError(os.path.join(path, missing[0]), "no such file (needed in "
                               "the Kaldi data directory)")
    if "speakers" in need and not present & {"utt2spk", "spk2utt"}:
        raise FeatureFileError(os.path.join(path, "utt2spk"), "no such file (the speakers "
                               "come from utt2spk or spk2utt)")
    if not present & set(_SCP_TABLES):
        raise FeatureFileError(path, "neither wav.scp nor feats.scp: not a Kaldi data "
                               "directory")
    lines = {t: {} for t in TABLES}
    tables = {}
    for t in _SCP_TABLES:
        if t in present:       # a table nothing will be read through runs nothing
            tables[t] = _table(os.path.join(path, t), lines[t],
                               allow_pipes=allow_pipes or bool(need) and t not in need)
    if "utt2spk" in present:
        tables["utt2spk"] = _utt2spk(os.path.join(path, "utt2spk"), lines["utt2spk"])
    if "spk2utt" in present:
        tables["spk2utt"] = _spk2utt(os.path.join(path, "spk2utt"), lines["spk2utt"])
    d = DataDir(path, wav=tables.get("wav.scp"), feats=tables.get("feats.scp"),
                utt2spk=tables.get("utt2spk"), spk2utt=tables.get("spk2utt"), lines=lines,
                allow_pipes=allow_pipes)
    if d.wav is not None and os.path.isfile(os.path.join(path, "segments")):
        lines["segments"] = {}
        d.segments = _segments(os.path.join(path, "segments"), lines["segments"], d)
    # the utterances of wav.scp: its recordings' segments where there are segments
    spoken = d.segments if d.segments is not None else d.wav
    if d.utt2spk is not None:
        if d.feats is not None:
            _check_same_utterances(d, "utt2spk", d.utt2spk, "feats.scp", d.feats)
        if spoken is not None:
            _check_same_utterances(d, "utt2spk", d.utt2spk, _spoken_table(d), spoken)
        if d.spk2utt is not None:
            _check_speakers(d)
    elif d.spk2utt is not None:
        listed = {u: spk for spk, utts in d.spk2utt.items() for u in utts}
        for name, table in (("feats.scp", d.feats), (_spoken_table(d), spoken)):
            if table is not None:
                _check_same_utterances(d, "spk2utt", listed, name, table)
                break
    logger.debug("%r", d)
    return d


def _spoken_table(d: DataDir) -> str:
    return "wav.scp" if d.segments is None else "segments"


def _segments(path: str, lines: dict, d: DataDir) -> dict:
    """``segments`` as ``utt -> (recording, start, end)``, checked against ``wav.scp``."""
    out = {}
    for n, line in read_lines(path, allow_pipes=True):   # ids and times: nothing is run
        fields = line.split()
        if len(fields) != 4:
            raise FeatureFileError(path, f"line {n}: expected 'utt-id recording-id start end', "
                                   f"got {len(fields)} fields")
        utt, rec = fields[:2]
        try:
            start, end = float(fields[2]), float(fields[3])
        except ValueError:
            raise FeatureFileError(path, f"line {n}: start and end must be numbers of seconds, "
                                   f"got {fields[2]!r} {fields[3]!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or (
                end <= start and end != -1):
            raise FeatureFileError(path, f"line {n}: segment {start:g}-{end:g} s is empty or "
                                   "negative (end -1: to the end of the recording)")
        if utt in out:
            raise FeatureFileError(path, f"line {n}: duplicate utterance id {utt!r} (first on "
                                   f"line {lines[utt]})")
        if rec not in d.wav:
            raise FeatureFileError(path, f"line {n}: recording {rec!r} of utterance {utt!r} is "
                                   f"not in {d.file('wav.scp')}")
        out[utt], lines[utt] = (rec, start, end), n
    if not out:
        raise FeatureFileError(path, "no entries")
    return out


_ID = re.compile(r"\S+")


def _check_id(value, what: str) -> str:
    value = str(value)
    if not _ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} cannot be a Kaldi id (non-empty, no whitespace)")
    return value


def write_data_dir(path: PathLike, *, wav: Mapping[str, str] | None = None,
                   feats: Mapping[str, str] | None = None,
                   utt2spk: Mapping[str, str] | None = None,
                   spk2utt: Mapping[str, Iterable[str]] | None = None) -> str:
    """Write the tables of a Kaldi data directory (each file atomically).

    Parameters
    ----------
    path : str or os.PathLike
        The directory; made if needed.  Tables not given are left alone.
    wav, feats : mapping of str to str, optional
        ``utt-id -> audio`` and ``utt-id -> rxspecifier``, written in
        mapping order.
    utt2spk : mapping of str to str, optional
        ``utt-id -> spk-id``; ``spk2utt`` is derived from it unless given.
    spk2utt : mapping of str to iterable of str, optional

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        For an id with whitespace, or a value with a line break.
    """
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    if utt2spk is not None and spk2utt is None:
        spk2utt = {}
        for utt, spk in utt2spk.items():
            spk2utt.setdefault(spk, []).append(utt)
    for name, table in (("wav.scp", wav), ("feats.scp", feats), ("utt2spk", utt2spk)):
        if table is None:
            continue
        rows = []
        for key, value in table.items():
            value = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
            if not value.strip() or "\n" in value or "\r" in value:
                raise ValueError(f"{name}: the value of {key!r} is empty or has a line break")
            rows.append(f"{_check_id(key, 'utterance id')} {value}\n")
        write_text_atomic(os.path.join(path, name), "".join(rows))
    if spk2utt is not None:
        rows = [" ".join([_check_id(spk, "speaker id")]
                         + [_check_id(u, "utterance id") for u in utts]) + "\n"
                for spk, utts in spk2utt.items()]
        write_text_atomic(os.path.join(path, "spk2utt"), "".join(rows))
    return path
