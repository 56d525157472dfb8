"""List files: which paths are lists, how they are read, what they expand to.

This module is the one place that decides whether a path names a *list
file* rather than a feature file (:func:`list_kind`, :func:`is_list_file`,
:func:`is_scp_file`), by its extension (case-insensitive):

``.scp``
    A Kaldi script file: lines ``utt-id rxspecifier`` (e.g.
    ``utt1 feats.ark:1234``), one feature matrix per line
    (:func:`read_scp`).
``.lst``, ``.txt``
    A plain list: one entry per line.  For :func:`ipem.io.list_features`
    each line is one feature file (or ``.scp``) path; the speaker tools read
    whitespace-separated fields with :func:`read_list`, or tables whose
    first line names the columns (NIST SRE ``.tsv`` tables: ``modelid
    segmentid side ...``) with :func:`read_table`.

In every list, blank lines and lines starting with ``#`` are skipped, the
text must be UTF-8 (a byte-order mark is skipped), and line numbers in
messages are 1-based.  Lists of fields (``model_id utterance ...``) separate
fields by whitespace; a field with spaces in it is quoted, ``"wav/my
file.wav"`` or ``'wav/my file.wav'`` (:func:`split_fields`; writers quote
with :func:`quote_field`).  Relative
paths, whether given directly or listed in ``.lst``/``.txt``/``.scp``
files, are resolved against the current working directory (the HTK and
Kaldi convention), not the list's directory; :func:`ipem.io.describe` makes
them absolute so that engines running elsewhere find the same files.

A list may name ``.scp`` files but not other ``.lst``/``.txt`` lists
(:func:`expand_sources`).  Problems raise
:class:`~ipem.io.FeatureFileError` (a ValueError) naming the list file and,
where it applies, the line.

**Shell commands.**  Kaldi lets an entry be a command (``gunzip -c a.gz |``,
``| cmd``, ``ark:cmd |``), which :mod:`kaldiio` runs through a shell.  A
list may come from elsewhere, so every reader here refuses such an entry
(:func:`ipem.io.kaldi.is_pipe`, on the whole line and on each of its
fields), naming the file and line, unless the caller passes
``allow_pipes=True`` (``ipem --allow-pipes``).  Sources given directly to
:func:`expand_sources` are the caller's own and are not checked.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Iterator, NamedTuple

from .checks import check_regular, reading
from .kaldi import is_pipe
from .refs import FeatureFileError, PathLike

__all__ = ["LIST_EXTENSIONS", "MAX_LINE_BYTES", "SCP_EXTENSIONS", "ListedPath", "check_no_pipe",
           "TABLE_COLUMNS", "expand_sources", "is_list_file", "is_scp_file", "list_kind",
           "quote_field", "read_lines", "read_list", "read_scp", "read_table", "split_fields",
           "table_header"]

logger = logging.getLogger(__name__)

#: Extensions (lower case) of Kaldi script files.
SCP_EXTENSIONS = (".scp",)
#: Extensions (lower case) of plain list files.
LIST_EXTENSIONS = (".lst", ".txt")
#: Longest line a list may have (a longer one is taken for binary data).
MAX_LINE_BYTES = 1 << 20


def list_kind(path) -> str | None:
    """Decide whether ``path`` names a list file, and which kind.

    Parameters
    ----------
    path : str, os.PathLike or anything else
        Only the extension is looked at; nothing is read.  Objects that are
        not paths (arrays, FeatureRefs, ...) are not list files.

    Returns
    -------
    {"scp", "list"} or None
        ``"scp"`` for Kaldi script files, ``"list"`` for ``.lst``/``.txt``
        lists, ``None`` for anything else (a feature file).
    """
    if not isinstance(path, (str, os.PathLike)):
        return None
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in SCP_EXTENSIONS:
        return "scp"
    if ext in LIST_EXTENSIONS:
        return "list"
    return None


def is_list_file(path) -> bool:
    """Whether ``path`` names a list of feature files (``.scp``, ``.lst`` or ``.txt``).

    These are the files :func:`ipem.io.list_features` expands; see
    :func:`list_kind`.
    """
    return list_kind(path) is not None


def is_scp_file(path) -> bool:
    """Whether ``path`` names a Kaldi script file (``.scp``); see :func:`list_kind`."""
    return list_kind(path) == "scp"


#: How :func:`check_no_pipe` tells the user to opt in.
PIPES_HINT = ("ipem does not run commands named in lists unless asked to (--allow-pipes; "
              "allow_pipes=True in Python)")


def check_no_pipe(entry: str, path: PathLike, lineno: int) -> None:
    """Refuse a list line that names a shell command (a Kaldi pipe).

    Parameters
    ----------
    entry : str
        The line (stripped); it is refused if it, or any of its
        whitespace-separated fields, is a pipe (:func:`ipem.io.kaldi.is_pipe`).
    path : str or os.PathLike
        The list file, for the message.
    lineno : int
        1-based line number, for the message.

    Raises
    ------
    FeatureFileError
        ``"<path>: line <n>: '<cmd>' is a shell command (a Kaldi pipe); ipem
        does not run commands named in lists unless asked to (...)"``.
    """
    if is_pipe(entry):
        cmd = entry
    else:
        cmd = next((field for field in entry.split() if is_pipe(field)), None)
        if cmd is None:
            return
    shown = cmd if len(cmd) <= 80 else cmd[:77] + "..."
    raise FeatureFileError(os.fspath(path), f"line {lineno}: {shown!r} is a shell command (a "
                           f"Kaldi pipe); {PIPES_HINT}")


def read_lines(path: PathLike, *, allow_empty: bool = False,
               allow_pipes: bool = False) -> list[tuple[int, str]]:
    """Read the entries of a list file, one per line.

    Parameters
    ----------
    path : str or os.PathLike
        UTF-8 text file.
    allow_empty : bool, optional
        Return ``[]`` for a list without entries instead of raising.
    allow_pipes : bool, optional
        Accept lines naming shell commands (Kaldi pipes such as
        ``gunzip -c a.ark.gz |``), which a Kaldi reader runs through a shell.
        By default such a line is refused (:func:`check_no_pipe`): a list
        from elsewhere must not run commands.

    Returns
    -------
    list of (int, str)
        ``(line_number, line)`` for each line that is not blank and does
        not start with ``#``, stripped of surrounding whitespace; line
        numbers are 1-based.

    Raises
    ------
    FeatureFileError
        If the file is missing, unreadable, a directory, not UTF-8 text,
        contains NUL bytes or a line longer than :data:`MAX_LINE_BYTES` (a
        binary file), or a line names a shell command and ``allow_pipes`` is
        false; the message names the file and, but for the first cases, the
        line.
    ValueError
        ``"<path>: the list is empty"`` if there are no entries and
        ``allow_empty`` is false.
    """
    path = os.fspath(path)
    rows = []
    check_regular(path)
    with reading(path, None, "list"), open(path, "rb") as f:
        for n, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            line = _decoded(raw, path, n)
            s = line.strip()
            if s and not s.startswith("#"):
                if not allow_pipes:
                    check_no_pipe(s, path, n)
                rows.append((n, s))
    if not rows and not allow_empty:
        raise ValueError(f"{path}: the list is empty")
    return rows


def _decoded(raw: bytes, path: str, n: int) -> str:
    """Line ``n`` of a list as text; a binary file is refused with its file and line."""
    binary = "(a binary file, not a text list?)"
    if len(raw) > MAX_LINE_BYTES:
        raise FeatureFileError(path, f"line {n}: longer than {MAX_LINE_BYTES} bytes {binary}")
    if b"\0" in raw:
        raise FeatureFileError(path, f"line {n}: contains a NUL byte {binary}")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeatureFileError(path, f"line {n}: byte {exc.start + 1} (0x{raw[exc.start]:02x}) "
                               f"is not UTF-8 text {binary}") from None
    return line[1:] if n == 1 and line.startswith("\ufeff") else line


def split_fields(line: str) -> list[str]:
    """Split a list line into fields: whitespace separates them, quotes keep spaces in one.

    A field that starts with ``"`` or ``'`` runs to the same quote, which
    must end the field; quotes elsewhere in a field are ordinary characters
    (``it's.wav``).  There are no escapes.

    Parameters
    ----------
    line : str

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        For a quote that is not closed, a closing quote followed by more of
        the field, or an empty quoted field.

    Examples
    --------
    >>> split_fields("spk1 'wav/my file.wav' wav/O'Neil.wav")
    ['spk1', 'wav/my file.wav', "wav/O'Neil.wav"]
    """
    fields, i, n = [], 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
        elif line[i] in "\"'":
            end = line.find(line[i], i + 1)
            if end < 0:
                raise ValueError(f"the quote {line[i]} at column {i + 1} is not closed")
            if end + 1 < n and not line[end + 1].isspace():
                raise ValueError(f"the closing quote {line[i]} at column {end + 1} must end "
                                 "the field (no escapes: quote with the other kind)")
            if end == i + 1:
                raise ValueError(f"empty quoted field at column {i + 1}")
            fields.append(line[i + 1:end])
            i = end + 1
        else:
            start = i
            while i < n and not line[i].isspace():
                i += 1
            fields.append(line[start:i])
    return fields


def quote_field(text: str) -> str:
    """``text`` as a list field that :func:`split_fields` reads back unchanged.

    Quoted only when needed (whitespace, a leading quote).

    Raises
    ------
    ValueError
        For empty text, or text with a line break or with whitespace and
        both kinds of quote, which no field can hold.
    """
    text = str(text)
    if not text or "\n" in text or "\r" in text:
        raise ValueError(f"{text!r} is empty or has a line break: it cannot be a list field")
    if not any(c.isspace() for c in text) and text[0] not in "\"'":
        return text
    for q in "\"'":
        if q not in text:
            return f"{q}{text}{q}"
    raise ValueError(f"{text!r} has whitespace and both kinds of quote: it cannot be a list "
                     "field")


def read_list(path: PathLike, *, allow_empty: bool = False,
              allow_pipes: bool = False) -> list[tuple[int, list[str]]]:
    """Read a list file as whitespace-separated fields (quoted where they hold spaces).

    Parameters
    ----------
    path : str or os.PathLike
        UTF-8 text file, e.g. ``model_id utt1 utt2 ...`` lines; a field with
        spaces is quoted (:func:`split_fields`).
    allow_empty : bool, optional
        Return ``[]`` for a list without entries instead of raising.
    allow_pipes : bool, optional
        Accept fields naming shell commands; see :func:`read_lines`.

    Returns
    -------
    list of (int, list of str)
        ``(line_number, fields)`` for each non-blank line not starting with
        ``#``; ``fields`` is the line split by :func:`split_fields` (never
        empty).

    Raises
    ------
    FeatureFileError
        As for :func:`read_lines` (missing, unreadable or binary file, a
        shell command), and for a badly quoted line (file and line named).
    ValueError
        ``"<path>: the list is empty"`` if there are no entries and
        ``allow_empty`` is false.
    """
    path = os.fspath(path)
    return _split_rows(path, read_lines(path, allow_empty=allow_empty, allow_pipes=allow_pipes),
                       allow_pipes)


def _split_rows(path: str, lines, allow_pipes: bool) -> list[tuple[int, list[str]]]:
    rows = []
    for n, line in lines:
        try:
            fields = split_fields(line)
        except ValueError as exc:
            raise FeatureFileError(path, f"line {n}: {exc}") from None
        if not allow_pipes:
            for field in fields:        # a quoted command is one field
                check_no_pipe(field, path, n)
        rows.append((n, fields))
    return rows


#: Column names of NIST SRE tables (SRE16-SRE21 ``docs/*.tsv``: enrollment
#: ``modelid segmentid side``, trials ``modelid segmentid side``, keys
#: ``modelid segmentid side targettype ...``, system output ``modelid
#: segmentid side LLR``), by the role :func:`read_table` reads them in;
#: compared case-insensitively.
TABLE_COLUMNS = {
    "model": ("modelid", "model_id", "model"),
    "segment": ("segmentid", "segment", "segment_id", "segid", "test", "testid"),
    "side": ("side", "channel"),
    "label": ("targettype", "target_type", "target"),
    "score": ("llr", "score"),
}
#: Values of a ``side`` column ipem reads: the segment's (only) channel.
TABLE_SIDES = ("a", "1")


def table_header(line: str) -> dict[str, int] | None:
    """The columns of a NIST-style header line, or None for an ordinary list line.

    A line is a header when its first field is a model column name
    (``modelid``...) and it has a segment column (``segmentid``,
    ``segment``...); see :data:`TABLE_COLUMNS`.

    Parameters
    ----------
    line : str

    Returns
    -------
    dict or None
        ``role -> column index`` for the roles of :data:`TABLE_COLUMNS`
        the header has (the first column of each role).
    """
    names = [c.strip().lower() for c in line.split("\t" if "\t" in line else None)]
    if not names or names[0] not in TABLE_COLUMNS["model"]:
        return None
    cols = {}
    for role, aliases in TABLE_COLUMNS.items():
        idx = next((i for i, name in enumerate(names) if name in aliases), None)
        if idx is not None:
            cols[role] = idx
    return cols if "segment" in cols else None


def read_table(path: PathLike, required, optional=(), *, allow_empty: bool = False,
               allow_pipes: bool = False) -> list[tuple[int, list[str]]]:
    """Read a list whose columns are named by a header line, or a plain list.

    NIST SRE tables (tab-separated, a header line of column names, see
    :data:`TABLE_COLUMNS`) are read by their column names: each row gives
    the ``required`` roles' values, in that order, then the ``optional``
    roles' the header has (other columns, e.g. ``partition``, are skipped;
    a ``side`` column must say ``a``: ipem reads the segment's one
    channel).  A file without such a header is read as :func:`read_list`
    (whitespace-separated fields, as they stand).

    Parameters
    ----------
    path : str or os.PathLike
    required : sequence of str
        Roles out of :data:`TABLE_COLUMNS` a header must have.
    optional : sequence of str, optional
        Roles taken when the header has them.
    allow_empty, allow_pipes : bool, optional
        As for :func:`read_list`.

    Returns
    -------
    list of (int, list of str)
        ``(line_number, fields)`` per entry line (the header is not one).

    Raises
    ------
    FeatureFileError
        As :func:`read_list`; a header without a required column, a row
        without one of the header's columns, a side other than ``a`` (the
        file and line are named).
    ValueError
        ``"<path>: the list is empty"`` for no entries unless
        ``allow_empty``.
    """
    path = os.fspath(path)
    lines = read_lines(path, allow_empty=True, allow_pipes=allow_pipes)
    header = table_header(lines[0][1]) if lines else None
    if header is None:
        if not lines and not allow_empty:
            raise ValueError(f"{path}: the list is empty")
        return _split_rows(path, lines, allow_pipes)
    head_line, head = lines[0]
    missing = [r for r in required if r not in header]
    if missing:
        raise FeatureFileError(path, f"line {head_line}: the header {head!r} has no "
                               f"{missing[0]} column (one of "
                               f"{', '.join(TABLE_COLUMNS[missing[0]])})")
    roles = list(required) + [r for r in optional if r in header]
    sep = "\t" if "\t" in head else None
    rows = []
    for n, line in lines[1:]:
        fields = [c.strip() for c in line.split(sep)]
        if len(fields) <= max(header.values()):
            raise FeatureFileError(path, f"line {n}: {len(fields)} columns, but the header "
                                   f"(line {head_line}) has {max(header.values()) + 1}")
        if "side" in header and fields[header["side"]].lower() not in TABLE_SIDES:
            raise FeatureFileError(path, f"line {n}: side {fields[header['side']]!r}: ipem "
                                   "reads a segment's one channel (side 'a'); cut the other "
                                   "side into its own file")
        row = [fields[header[r]] for r in roles]
        empty = next((r for r, v in zip(roles, row) if not v), None)
        if empty is not None:
            raise FeatureFileError(path, f"line {n}: empty {empty} column")
        rows.append((n, row))
    if not rows and not allow_empty:
        raise ValueError(f"{path}: the list is empty")
    return rows


def read_scp(path: PathLike, *, allow_pipes: bool = False) -> list[tuple[int, str, str]]:
    """Read a Kaldi script file.

    Parameters
    ----------
    path : str or os.PathLike
        ``.scp`` file with ``utt-id rxspecifier`` lines; the rxspecifier is
        the rest of the line (it may contain spaces, e.g. a pipe).
    allow_pipes : bool, optional
        Accept rxspecifiers that are shell commands (``cmd |``), which
        :mod:`kaldiio` runs through a shell when the matrix is read.  By
        default they are refused (see :func:`read_lines`).

    Returns
    -------
    list of (int, str, str)
        ``(line_number, utt_id, rxspecifier)`` in file order; ``[]`` for a
        file without entries.

    Raises
    ------
    FeatureFileError
        If the file cannot be read (see :func:`read_lines`), a line has no
        rxspecifier or names a shell command (unless ``allow_pipes``), or an
        utterance id appears twice (the message gives both line numbers).
    """
    path = os.fspath(path)
    out = []
    seen: dict[str, int] = {}
    for lineno, line in read_lines(path, allow_empty=True, allow_pipes=allow_pipes):
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise FeatureFileError(path, f"line {lineno}: expected 'utt-id rxspecifier', "
                                   f"got {line!r}")
        utt, spec = parts
        if utt in seen:
            raise FeatureFileError(path, f"line {lineno}: duplicate utterance id {utt!r} "
                                   f"(first on line {seen[utt]})")
        seen[utt] = lineno
        out.append((lineno, utt, spec))
    return out


class ListedPath(NamedTuple):
    """One feature matrix named by a source, before its header is read.

    Attributes
    ----------
    spec : str
        Feature file path, or for Kaldi the rxspecifier, as written (relative
        paths not yet resolved).
    utt : str or None
        Utterance id when the entry comes from an ``.scp`` line (the matrix
        is then Kaldi data); ``None`` for a plain feature file.
    """

    spec: str
    utt: str | None


def expand_sources(sources: PathLike | Iterable[PathLike], *,
                   allow_pipes: bool = False) -> Iterator[ListedPath]:
    """Expand feature sources into the feature matrices they name, in order.

    Parameters
    ----------
    sources : str, os.PathLike or iterable of them
        Feature files, ``.scp`` files and ``.lst``/``.txt`` lists.  A list
        names feature files or ``.scp`` files, one per line (the whole line
        is the path); a list inside a list is taken as a feature file.
    allow_pipes : bool, optional
        Accept shell commands (Kaldi pipes) named in the lists and scp
        files; by default they are refused (see :func:`read_lines`).
        Sources given here directly are not checked: they are the caller's.

    Yields
    ------
    ListedPath
        One per feature matrix: each plain feature file, each scp line.
        Lazily, so that a caller reading headers meets problems in source
        order.

    Raises
    ------
    FeatureFileError
        If a list or scp file cannot be read or is malformed, or names a
        shell command and ``allow_pipes`` is false.
    TypeError
        If a source is not a path.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    for source in sources:
        yield from _expand(os.fspath(source), True, allow_pipes)


def _expand(path: str, allow_list: bool, allow_pipes: bool) -> Iterator[ListedPath]:
    kind = list_kind(path)
    if kind == "scp":
        entries = read_scp(path, allow_pipes=allow_pipes)
        logger.debug("%s: %d scp entries", path, len(entries))
        for _, utt, spec in entries:
            yield ListedPath(spec, utt)
    elif kind == "list" and allow_list:
        entries = read_lines(path, allow_empty=True, allow_pipes=allow_pipes)
        logger.debug("%s: %d list entries", path, len(entries))
        for _, entry in entries:
            yield from _expand(entry, False, allow_pipes)
    else:
        yield ListedPath(path, None)
