"""Speech feature files: description, validation, loading and writing.

A *feature file* holds one matrix of shape ``(n_frames, n_features)``: one
row per analysis frame (typically 10 ms), one column per feature dimension
(e.g. MFCCs plus deltas).  Four on-disk formats are supported, each for
reading and for writing:

``"htk"``
    HTK parameter files: a 12-byte big-endian header (``nSamples`` int32,
    ``sampPeriod`` int32 in 100 ns units, ``sampSize`` int16 in bytes per
    frame, ``parmKind`` int16) followed by big-endian float32 data.  Only
    uncompressed float data is supported; the ``_C`` (compressed) and ``_K``
    (CRC) qualifiers, and the integer kinds WAVEFORM, IREFC and DISCRETE,
    are rejected.
``"kaldi"``
    Matrices in Kaldi archives, addressed through ``.scp`` files whose lines
    read ``utt-id path.ark:offset``.  Each scp line is one feature "file";
    its :attr:`FeatureRef.key` is the utterance id and its
    :attr:`FeatureRef.path` the rxspecifier (``/abs/path.ark:offset``).
    Matrix I/O is done by :mod:`kaldiio`.
``"npy"``
    NumPy ``.npy`` files holding a 2-D numeric array.
``"h5"``
    HDF5 files with one 2-D dataset, named ``"features"`` unless stated
    otherwise (:attr:`FeatureRef.key` is the dataset name).

The intended use is distributed training: the client calls
:func:`list_features` (which reads headers only) and :func:`assign_balanced`
to spread files over ipyparallel engines by frame count, then ships the
small, picklable :class:`FeatureRef` objects to the engines, each of which
calls :func:`load_many` on its own share.

Every problem found in a feature file raises :class:`FeatureFileError` (a
:class:`ValueError`) whose message starts with the file path (and the
utterance id or dataset name where there is one) and says what is wrong.

Relative paths, whether given directly, listed in ``.lst``/``.txt`` files or
in ``.scp`` files, are resolved against the current working directory (the
HTK and Kaldi convention) and stored as absolute paths, so that engines
running in other directories find the same files.

All writers are atomic: data goes to a temporary file in the destination
directory which is renamed over the destination only once it is complete,
so a failed write leaves neither a partial file nor a temporary one.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import os
import re
import secrets
import struct
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence, Union

import h5py
import kaldiio
import numpy as np

__all__ = [
    "FORMATS",
    "FeatureFileError",
    "FeatureRef",
    "HTKHeader",
    "assign_balanced",
    "describe",
    "infer_format",
    "list_features",
    "load",
    "load_many",
    "read_htk_header",
    "validate_all",
    "write",
    "write_kaldi",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Supported format names.
FORMATS = ("htk", "kaldi", "npy", "h5")

#: Default HDF5 dataset name.
DEFAULT_H5_KEY = "features"

#: File extensions (lower case) from which a feature format is inferred.
_EXTENSIONS = {
    ".htk": "htk",
    ".mfc": "htk",
    ".plp": "htk",
    ".fea": "htk",
    ".npy": "npy",
    ".h5": "h5",
    ".hdf5": "h5",
}
_SCP_EXTENSIONS = (".scp",)
_LIST_EXTENSIONS = (".lst", ".txt")


# ---------------------------------------------------------------------------
# Errors and descriptors
# ---------------------------------------------------------------------------


class FeatureFileError(ValueError):
    """A feature file is missing, unreadable, malformed or inconsistent.

    Parameters
    ----------
    path : str
        The offending file (for Kaldi, the rxspecifier ``ark:offset``).
    problem : str
        What is wrong, e.g. ``"contains zero frames"``.
    key : str or None, optional
        Kaldi utterance id or HDF5 dataset name, if any.
    fmt : str or None, optional
        Format of the file, used to phrase ``key`` in the message.

    Attributes
    ----------
    path, problem, key, fmt
        As given.
    """

    def __init__(self, path: str, problem: str, key: str | None = None,
                 fmt: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.key = key
        self.fmt = fmt
        super().__init__(f"{_where(self.path, key, fmt)}: {problem}")

    def __reduce__(self):
        # Exceptions pickle as cls(*self.args) by default, which does not
        # match our signature; ipyparallel needs these to cross processes.
        return (type(self), (self.path, self.problem, self.key, self.fmt))


def _where(path: str, key: str | None, fmt: str | None) -> str:
    """Human-readable location of a feature matrix, for messages."""
    if key is None:
        return path
    if fmt == "h5":
        return f"{path} (dataset {key!r})"
    return f"{path} (utterance {key})"


@dataclass(frozen=True)
class FeatureRef:
    """Descriptor of one feature matrix, cheap to pickle and send to engines.

    Parameters
    ----------
    path : str
        Absolute file path; for Kaldi the rxspecifier
        ``/abs/path.ark:offset``.
    fmt : {"htk", "kaldi", "npy", "h5"}
        File format.
    key : str or None
        Kaldi utterance id or HDF5 dataset name; ``None`` for HTK and npy.
    n_frames : int
        Number of rows (frames) of the matrix.
    n_features : int
        Number of columns (feature dimensions) of the matrix.
    """

    path: str
    fmt: str
    key: str | None
    n_frames: int
    n_features: int

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown feature format {self.fmt!r}; expected one of {FORMATS}")
        for name in ("n_frames", "n_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"FeatureRef.{name} must be a non-negative int, got {value!r}")
            object.__setattr__(self, name, int(value))

    @property
    def shape(self) -> tuple[int, int]:
        """tuple of int: ``(n_frames, n_features)``."""
        return (self.n_frames, self.n_features)

    def where(self) -> str:
        """Return the location string used in error messages."""
        return _where(self.path, self.key, self.fmt)


class _Format(NamedTuple):
    """Per-format operations (see ``_FORMATS``).

    header(path, key, files) -> (n_frames, n_features)
        Read only the header, validate it and the file size.
    fill(ref, out, files) -> None
        Read the matrix into ``out`` (shape ``ref.shape``, C-contiguous),
        after checking that the file still matches ``ref``.
    write(tmp_path, X, key, options) -> None
        Write ``X`` to the (already created, empty) temporary file.
    """

    header: Callable
    fill: Callable
    write: Callable | None
    default_key: str | None


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _reading(path: str, key: str | None, fmt: str) -> Iterator[None]:
    """Turn low-level read errors into :class:`FeatureFileError`."""
    try:
        yield
    except FeatureFileError:
        raise
    except FileNotFoundError as exc:
        raise FeatureFileError(path, f"does not exist ({exc.strerror})", key, fmt) from exc
    except PermissionError as exc:
        raise FeatureFileError(path, f"is not readable ({exc.strerror})", key, fmt) from exc
    except IsADirectoryError as exc:
        raise FeatureFileError(path, "is a directory, not a feature file", key, fmt) from exc
    except (OSError, ValueError, KeyError, AssertionError, EOFError, struct.error,
            UnicodeDecodeError, IndexError, RuntimeError) as exc:
        # kaldiio and h5py signal corrupt input with a variety of types.
        raise FeatureFileError(path, f"cannot read {fmt} data: {type(exc).__name__}: {exc}",
                               key, fmt) from exc


@contextlib.contextmanager
def _open_files() -> Iterator[dict]:
    """Cache of open files (Kaldi arks), closed on exit."""
    files: dict = {}
    try:
        yield files
    finally:
        for f in files.values():
            with contextlib.suppress(Exception):
                f.close()


def _check_numeric_dtype(dtype: np.dtype, path: str, key: str | None, fmt: str) -> None:
    if dtype.hasobject or dtype.kind not in "fiu":
        raise FeatureFileError(path, f"non-numeric dtype {dtype} (expected float or integer data)",
                               key, fmt)


def _check_counts(n_frames: int, n_features: int, path: str, key: str | None, fmt: str) -> None:
    if n_frames == 0:
        raise FeatureFileError(path, "contains zero frames", key, fmt)
    if n_features == 0:
        raise FeatureFileError(path, "has zero features per frame", key, fmt)


def _check_matches_ref(ref: FeatureRef, n_frames: int, n_features: int) -> None:
    """Check that a freshly read header agrees with ``ref``."""
    if n_features != ref.n_features:
        raise FeatureFileError(ref.path, f"wrong dimensionality: file has {n_features} features "
                               f"per frame, expected {ref.n_features}", ref.key, ref.fmt)
    if n_frames != ref.n_frames:
        raise FeatureFileError(ref.path, f"wrong frame count: file has {n_frames} frames, "
                               f"expected {ref.n_frames} (file changed since it was described?)",
                               ref.key, ref.fmt)


def _check_finite(ref: FeatureRef, X: np.ndarray, block: int = 1 << 16) -> None:
    """Raise if ``X`` (shape ``(n_frames, n_features)``) has NaN/Inf; blockwise."""
    for start in range(0, X.shape[0], block):
        ok = np.isfinite(X[start:start + block]).all(axis=1)
        if not ok.all():
            row = start + int(np.flatnonzero(~ok)[0])
            raise FeatureFileError(ref.path, f"non-finite value (NaN or Inf) in row {row} "
                                   f"(0-based frame index, as {X.dtype})", ref.key, ref.fmt)


def _float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dt}")
    return dt.newbyteorder("=")


def _file_size(f) -> int:
    return os.fstat(f.fileno()).st_size


# ---------------------------------------------------------------------------
# HTK
# ---------------------------------------------------------------------------

_HTK_HEADER = struct.Struct(">iihh")
_HTK_HEADER_LE = struct.Struct("<iihh")
_HTK_COMPRESSED = 0o2000  # _C
_HTK_CRC = 0o10000  # _K
_HTK_BASE_MASK = 0o77
_HTK_INTEGER_KINDS = {0: "WAVEFORM", 5: "IREFC", 10: "DISCRETE"}
_HTK_USER = 9


class HTKHeader(NamedTuple):
    """Fields of an HTK parameter file header.

    Attributes
    ----------
    n_samples : int
        Number of frames.
    samp_period : int
        Frame period in 100 ns units (100000 = 10 ms).
    samp_size : int
        Bytes per frame (4 * n_features for float data).
    parm_kind : int
        Parameter kind code with qualifier bits (9 = USER).
    """

    n_samples: int
    samp_period: int
    samp_size: int
    parm_kind: int


def _htk_plausible(hdr: HTKHeader, size: int) -> bool:
    """Whether ``hdr`` describes an uncompressed float file of ``size`` bytes."""
    kind = hdr.parm_kind & 0xFFFF
    return (hdr.n_samples > 0 and hdr.samp_size > 0 and hdr.samp_size % 4 == 0
            and not kind & (_HTK_COMPRESSED | _HTK_CRC)
            and (kind & _HTK_BASE_MASK) not in _HTK_INTEGER_KINDS
            and _HTK_HEADER.size + hdr.n_samples * hdr.samp_size == size)


def _htk_read_header(f, path: str) -> tuple[HTKHeader, int]:
    """Read and validate the header of open HTK file ``f``; return it and the file size."""
    size = _file_size(f)
    raw = f.read(_HTK_HEADER.size)
    if len(raw) < _HTK_HEADER.size:
        raise FeatureFileError(path, f"too short for an HTK header: file has {size} bytes, "
                               f"the header alone needs {_HTK_HEADER.size}", None, "htk")
    hdr = HTKHeader(*_HTK_HEADER.unpack(raw))
    expected = _HTK_HEADER.size + hdr.n_samples * hdr.samp_size
    if size != expected and _htk_plausible(HTKHeader(*_HTK_HEADER_LE.unpack(raw)), size):
        raise FeatureFileError(path, "the file looks like a little-endian HTK file (its header "
                               "only matches the file size when read little-endian); HTK files "
                               "must be big-endian", None, "htk")
    kind = hdr.parm_kind & 0xFFFF
    if kind & _HTK_COMPRESSED:
        raise FeatureFileError(path, f"compressed HTK data (parmKind {kind:#o} has the _C "
                               "qualifier) is not supported", None, "htk")
    if kind & _HTK_CRC:
        raise FeatureFileError(path, f"HTK data with CRC checksum (parmKind {kind:#o} has the _K "
                               "qualifier) is not supported", None, "htk")
    base = kind & _HTK_BASE_MASK
    if base in _HTK_INTEGER_KINDS:
        raise FeatureFileError(path, f"HTK parmKind {_HTK_INTEGER_KINDS[base]} holds integer "
                               "samples, not float features", None, "htk")
    if hdr.samp_size <= 0 or hdr.samp_size % 4:
        raise FeatureFileError(path, f"bad sampSize {hdr.samp_size}: must be a positive multiple "
                               "of 4 (float32 features)", None, "htk")
    if hdr.n_samples < 0:
        raise FeatureFileError(path, f"bad nSamples {hdr.n_samples} in header", None, "htk")
    if size != expected:
        what = "truncated" if size < expected else "size mismatch"
        raise FeatureFileError(path, f"{what}: header says {hdr.n_samples} frames of "
                               f"{hdr.samp_size} bytes ({expected} bytes), file has {size} bytes",
                               None, "htk")
    _check_counts(hdr.n_samples, hdr.samp_size // 4, path, None, "htk")
    return hdr, size


def read_htk_header(path: PathLike) -> HTKHeader:
    """Read and validate the 12-byte header of an HTK parameter file.

    Parameters
    ----------
    path : str or os.PathLike
        HTK file.

    Returns
    -------
    HTKHeader
        The header fields.

    Raises
    ------
    FeatureFileError
        If the file is missing, unsupported (compressed, CRC, integer kind),
        has a bad ``sampSize`` or a size inconsistent with its header.
    """
    path = os.fspath(path)
    with _reading(path, None, "htk"), open(path, "rb") as f:
        return _htk_read_header(f, path)[0]


def _htk_header(path: str, key: str | None, files: dict) -> tuple[int, int]:
    hdr = read_htk_header(path)
    return hdr.n_samples, hdr.samp_size // 4


def _htk_fill(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    with open(ref.path, "rb") as f:
        hdr, _ = _htk_read_header(f, ref.path)
        _check_matches_ref(ref, hdr.n_samples, hdr.samp_size // 4)
        n_bytes = hdr.n_samples * hdr.samp_size
        if out.dtype == np.float32:
            # Read straight into the output, then fix the byte order in place.
            got = f.readinto(memoryview(out).cast("B"))
            if sys.byteorder == "little":
                out.byteswap(inplace=True)
        else:
            buf = np.fromfile(f, dtype=">f4", count=out.size)
            got = buf.nbytes
            if got == n_bytes:
                out[...] = buf.reshape(out.shape)
        if got != n_bytes:
            raise FeatureFileError(ref.path, f"truncated while reading: expected {n_bytes} data "
                                   f"bytes, got {got}", None, "htk")


def _htk_write(tmp: str, X: np.ndarray, key: str | None, options: dict) -> None:
    period = options.get("sample_period", 100000)
    kind = options.get("parm_kind", _HTK_USER)
    n, d = X.shape
    if not 0 < 4 * d <= 0x7FFF:
        raise ValueError(f"HTK cannot store {d} features per frame (sampSize is int16)")
    if n > 0x7FFFFFFF:
        raise ValueError(f"HTK cannot store {n} frames (nSamples is int32)")
    if not 0 < int(period) <= 0x7FFFFFFF:
        raise ValueError(f"sample_period must be a positive int32 (100 ns units), got {period}")
    if not 0 <= int(kind) <= 0xFFFF:
        raise ValueError(f"parm_kind must fit in 16 bits, got {kind}")
    kind = int(kind)
    if kind & (_HTK_COMPRESSED | _HTK_CRC) or (kind & _HTK_BASE_MASK) in _HTK_INTEGER_KINDS:
        raise ValueError(f"parm_kind {kind:#o} is not an uncompressed float kind")
    if kind >= 0x8000:  # stored as a signed int16
        kind -= 0x10000
    with open(tmp, "wb") as f:
        f.write(_HTK_HEADER.pack(n, int(period), 4 * d, kind))
        f.write(np.ascontiguousarray(X, dtype=">f4").data)


# ---------------------------------------------------------------------------
# NumPy .npy
# ---------------------------------------------------------------------------


def _npy_read_header(f, path: str) -> tuple[tuple[int, ...], np.dtype]:
    size = _file_size(f)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise FeatureFileError(path, f"unsupported .npy format version {version}", None, "npy")
    _check_numeric_dtype(dtype, path, None, "npy")
    if len(shape) != 2:
        raise FeatureFileError(path, f"expected a 2-D array (frames x features), got shape {shape}",
                               None, "npy")
    expected = f.tell() + shape[0] * shape[1] * dtype.itemsize
    if size < expected:
        raise FeatureFileError(path, f"truncated: header says {shape[0]}x{shape[1]} {dtype} "
                               f"({expected} bytes with header), file has {size} bytes",
                               None, "npy")
    _check_counts(shape[0], shape[1], path, None, "npy")
    return shape, dtype


def _npy_header(path: str, key: str | None, files: dict) -> tuple[int, int]:
    with open(path, "rb") as f:
        shape, _ = _npy_read_header(f, path)
    return shape


def _npy_fill(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    with open(ref.path, "rb") as f:
        shape, _ = _npy_read_header(f, ref.path)
    _check_matches_ref(ref, *shape)
    data = np.load(ref.path, mmap_mode="r", allow_pickle=False)
    try:
        out[...] = data
    finally:
        del data  # drops the memory map


def _npy_write(tmp: str, X: np.ndarray, key: str | None, options: dict) -> None:
    with open(tmp, "wb") as f:  # a file object stops np.save appending ".npy"
        np.save(f, X, allow_pickle=False)


# ---------------------------------------------------------------------------
# HDF5
# ---------------------------------------------------------------------------


def _h5_dataset(f: h5py.File, path: str, key: str) -> h5py.Dataset:
    obj = f.get(key)
    if obj is None:
        names = ", ".join(sorted(f.keys())) or "nothing"
        raise FeatureFileError(path, f"no dataset {key!r} in HDF5 file (top level has: {names})",
                               key, "h5")
    if not isinstance(obj, h5py.Dataset):
        raise FeatureFileError(path, f"{key!r} is a {type(obj).__name__}, not a dataset", key, "h5")
    _check_numeric_dtype(obj.dtype, path, key, "h5")
    if obj.ndim != 2:
        raise FeatureFileError(path, f"expected a 2-D dataset (frames x features), got shape "
                               f"{obj.shape}", key, "h5")
    _check_counts(obj.shape[0], obj.shape[1], path, key, "h5")
    return obj


def _h5_header(path: str, key: str | None, files: dict) -> tuple[int, int]:
    with h5py.File(path, "r") as f:
        return _h5_dataset(f, path, key).shape


def _h5_fill(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    with h5py.File(ref.path, "r") as f:
        ds = _h5_dataset(f, ref.path, ref.key)
        _check_matches_ref(ref, *ds.shape)
        ds.read_direct(out)  # HDF5 converts to out.dtype; no temporary copy


def _h5_write(tmp: str, X: np.ndarray, key: str | None, options: dict) -> None:
    with h5py.File(tmp, "w") as f:
        f.create_dataset(key, data=X)


# ---------------------------------------------------------------------------
# Kaldi
# ---------------------------------------------------------------------------

_ARK_OFFSET = re.compile(r"(?P<file>.+):(?P<offset>\d+)")
_KALDI_MATRIX_TYPES = {"FM": 4, "DM": 8}
_KALDI_COMPRESSED_TYPES = ("CM", "CM2", "CM3")


def _is_pipe(spec: str) -> bool:
    s = spec.strip()
    return s.startswith("|") or s.endswith("|")


def _abs_kaldi_spec(spec: str) -> str:
    """Make the file part of a Kaldi rxspecifier absolute (pipes are left alone)."""
    if _is_pipe(spec):
        return spec
    slices = ""
    m = re.fullmatch(r"(.*)(\[[0-9:,\s]*\])", spec)
    if m:
        spec, slices = m.group(1), m.group(2)
    m = _ARK_OFFSET.fullmatch(spec)
    if m:
        return f"{os.path.abspath(m.group('file'))}:{m.group('offset')}{slices}"
    return os.path.abspath(spec) + slices


def _kaldi_file(files: dict, name: str):
    f = files.get(name)
    if f is None:
        f = files[name] = open(name, "rb")
    return f


def _kaldi_parse_header(spec: str, key: str | None, files: dict) -> tuple[int, int] | None:
    """Shape from the binary matrix header at ``file:offset``; ``None`` if not parseable here."""
    m = _ARK_OFFSET.fullmatch(spec)
    if m is None or _is_pipe(spec):
        return None  # pipe, slice or no offset: let kaldiio handle it
    name, offset = m.group("file"), int(m.group("offset"))
    f = _kaldi_file(files, name)
    size = _file_size(f)
    if offset >= size:
        raise FeatureFileError(spec, f"offset {offset} is beyond the end of the ark "
                               f"({size} bytes)", key, "kaldi")
    f.seek(offset)
    if f.read(2) != b"\0B":
        return None  # text-mode ark or something kaldiio may know
    token = f.read(4).split(b" ", 1)[0].decode("ascii", "replace")
    f.seek(offset + 2 + len(token) + 1)
    if token in _KALDI_MATRIX_TYPES:
        raw = f.read(10)
        if len(raw) < 10 or raw[0:1] != b"\4" or raw[5:6] != b"\4":
            raise FeatureFileError(spec, f"corrupt or truncated {token} matrix header", key, "kaldi")
        rows, cols = struct.unpack("<i", raw[1:5])[0], struct.unpack("<i", raw[6:10])[0]
        n_data = rows * cols * _KALDI_MATRIX_TYPES[token]
    elif token in _KALDI_COMPRESSED_TYPES:
        raw = f.read(16)
        if len(raw) < 16:
            raise FeatureFileError(spec, f"truncated {token} matrix header", key, "kaldi")
        _, _, rows, cols = struct.unpack("<ffii", raw)
        n_data = {"CM": 8 * cols + rows * cols, "CM2": 2 * rows * cols, "CM3": rows * cols}[token]
    elif token in ("FV", "DV"):
        raise FeatureFileError(spec, f"is a vector ({token}), not a feature matrix", key, "kaldi")
    else:
        return None
    if rows < 0 or cols < 0:
        raise FeatureFileError(spec, f"bad matrix header: {rows}x{cols}", key, "kaldi")
    end = f.tell() + n_data
    if size < end:
        raise FeatureFileError(spec, f"truncated: {token} matrix header says {rows}x{cols} "
                               f"(ends at byte {end}), ark has {size} bytes", key, "kaldi")
    return rows, cols


def _kaldi_load_raw(spec: str, key: str | None, files: dict) -> np.ndarray:
    fd_dict = None if _is_pipe(spec) else files
    arr = kaldiio.load_mat(spec, fd_dict=fd_dict)
    if not isinstance(arr, np.ndarray):
        raise FeatureFileError(spec, f"is not a feature matrix (got {type(arr).__name__})",
                               key, "kaldi")
    _check_numeric_dtype(arr.dtype, spec, key, "kaldi")
    if arr.ndim != 2:
        raise FeatureFileError(spec, f"expected a matrix, got an array of shape {arr.shape}",
                               key, "kaldi")
    return arr


def _kaldi_header(spec: str, key: str | None, files: dict) -> tuple[int, int]:
    shape = _kaldi_parse_header(spec, key, files)
    if shape is None:  # correctness over speed: load it
        shape = _kaldi_load_raw(spec, key, files).shape
    _check_counts(shape[0], shape[1], spec, key, "kaldi")
    return shape


def _kaldi_fill(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    arr = _kaldi_load_raw(ref.path, ref.key, files)
    _check_counts(arr.shape[0], arr.shape[1], ref.path, ref.key, "kaldi")
    _check_matches_ref(ref, *arr.shape)
    out[...] = arr


_FORMATS: dict[str, _Format] = {
    "htk": _Format(_htk_header, _htk_fill, _htk_write, None),
    "kaldi": _Format(_kaldi_header, _kaldi_fill, None, None),
    "npy": _Format(_npy_header, _npy_fill, _npy_write, None),
    "h5": _Format(_h5_header, _h5_fill, _h5_write, DEFAULT_H5_KEY),
}
assert tuple(_FORMATS) == FORMATS


# ---------------------------------------------------------------------------
# Describing and listing
# ---------------------------------------------------------------------------


def infer_format(path: PathLike) -> str:
    """Infer a feature format from a file name.

    Parameters
    ----------
    path : str or os.PathLike
        File name, or a Kaldi rxspecifier ``file.ark:offset``.

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    FeatureFileError
        If the extension is not recognised.
    """
    path = os.fspath(path)
    if _is_pipe(path) or re.search(r"\.ark(:\d+)?(\[[0-9:,\s]*\])?$", path, re.IGNORECASE):
        return "kaldi"
    ext = os.path.splitext(path)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext in _SCP_EXTENSIONS:
        raise FeatureFileError(path, "is a Kaldi script file; use list_features() to expand it")
    known = ", ".join(sorted(_EXTENSIONS))
    raise FeatureFileError(path, f"cannot infer the feature format from extension {ext!r} "
                           f"(known: {known}; Kaldi archives via .scp); pass fmt=")


def _check_fmt(fmt: str) -> _Format:
    try:
        return _FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown feature format {fmt!r}; expected one of {FORMATS}") from None


def _describe(path_or_spec: PathLike, fmt: str | None, key: str | None,
              files: dict) -> FeatureRef:
    spec = os.fspath(path_or_spec)
    if fmt is None:
        fmt = infer_format(spec)
    ops = _check_fmt(fmt)
    if fmt in ("htk", "npy") and key is not None:
        raise ValueError(f"key is not used by the {fmt} format (got key={key!r})")
    if key is None:
        key = ops.default_key
    path = _abs_kaldi_spec(spec) if fmt == "kaldi" else os.path.abspath(spec)
    with _reading(path, key, fmt):
        n_frames, n_features = ops.header(path, key, files)
    return FeatureRef(path, fmt, key, int(n_frames), int(n_features))


def describe(path_or_spec: PathLike, fmt: str | None = None, *,
             key: str | None = None) -> FeatureRef:
    """Describe one feature matrix by reading only its header.

    Parameters
    ----------
    path_or_spec : str or os.PathLike
        Feature file, or for Kaldi an rxspecifier such as ``feats.ark:1234``.
    fmt : {"htk", "kaldi", "npy", "h5"} or None, optional
        File format; inferred from the extension when ``None``.
    key : str or None, optional
        HDF5 dataset name (default ``"features"``) or Kaldi utterance id
        (only used in messages).  Must be ``None`` for HTK and npy.

    Returns
    -------
    FeatureRef
        Descriptor with ``n_frames`` and ``n_features`` taken from the
        header; the path is made absolute.

    Raises
    ------
    FeatureFileError
        If the file is missing, unreadable, malformed, truncated, non-numeric,
        not 2-D or has zero frames.

    Notes
    -----
    HTK: 12-byte header plus file-size check.  npy: the array header plus a
    size check.  HDF5: the dataset's shape and dtype.  Kaldi: the binary
    matrix header at the ark offset plus a size check; other Kaldi inputs
    (pipes, slices, text arks) are loaded to get their shape.
    """
    with _open_files() as files:
        return _describe(path_or_spec, fmt, key, files)


def _read_lines(path: str) -> list[tuple[int, str]]:
    with _reading(path, None, "list"), open(path, encoding="utf-8") as f:
        return [(i, s) for i, line in enumerate(f, 1)
                if (s := line.strip()) and not s.startswith("#")]


def _expand_scp(scp: str, files: dict) -> list[FeatureRef]:
    refs = []
    seen: dict[str, int] = {}
    for lineno, line in _read_lines(scp):
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise FeatureFileError(scp, f"line {lineno}: expected 'utt-id rxspecifier', "
                                   f"got {line!r}")
        utt, spec = parts
        if utt in seen:
            raise FeatureFileError(scp, f"line {lineno}: duplicate utterance id {utt!r} "
                                   f"(first on line {seen[utt]})")
        seen[utt] = lineno
        refs.append(_describe(spec, "kaldi", utt, files))
    return refs


def _expand(source: PathLike, fmt: str | None, h5_key: str, files: dict,
            allow_list: bool) -> list[FeatureRef]:
    path = os.fspath(source)
    ext = os.path.splitext(path)[1].lower()
    if ext in _SCP_EXTENSIONS:
        return _expand_scp(path, files)
    if ext in _LIST_EXTENSIONS and allow_list:
        refs = []
        for _, entry in _read_lines(path):
            refs.extend(_expand(entry, fmt, h5_key, files, allow_list=False))
        return refs
    f = fmt if fmt is not None else infer_format(path)
    key = h5_key if f == "h5" else None
    return [_describe(path, f, key, files)]


def _check_same_dims(refs: Sequence[FeatureRef]) -> int:
    first = refs[0]
    for ref in refs:
        if ref.n_features != first.n_features:
            raise FeatureFileError(ref.path, f"dimensionality mismatch: has {ref.n_features} "
                                   f"features per frame, but {first.where()} has "
                                   f"{first.n_features}", ref.key, ref.fmt)
    return first.n_features


def list_features(sources: PathLike | Iterable[PathLike], fmt: str | None = None, *,
                  h5_key: str = DEFAULT_H5_KEY) -> list[FeatureRef]:
    """Describe a collection of feature files, reading headers only.

    Parameters
    ----------
    sources : str, os.PathLike or iterable of them
        Either a single path, or a list of paths.  Each path is one of:

        * a Kaldi script file ``*.scp`` (lines ``utt-id path.ark:offset``),
          expanded to one :class:`FeatureRef` per line;
        * a list file ``*.lst`` / ``*.txt`` with one feature file (or
          ``.scp``) per line; blank lines and lines starting with ``#`` are
          skipped;
        * a feature file whose format is inferred from its extension
          (``.htk .mfc .plp .fea`` -> htk, ``.npy``, ``.h5 .hdf5``).
    fmt : {"htk", "kaldi", "npy", "h5"} or None, optional
        Force the format of plain feature files (e.g. HTK files with
        unusual extensions).  ``.scp`` and list files are still expanded.
    h5_key : str, optional
        Dataset name used for HDF5 files.

    Returns
    -------
    list of FeatureRef
        In source order.

    Raises
    ------
    FeatureFileError
        If any file is bad (see :func:`describe`), or if the files do not all
        have the same number of features; the message names the first file
        that differs and both dimensionalities.
    ValueError
        If no feature files are found.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if fmt is not None:
        _check_fmt(fmt)
    refs: list[FeatureRef] = []
    with _open_files() as files:
        for source in sources:
            refs.extend(_expand(source, fmt, h5_key, files, allow_list=True))
    if not refs:
        raise ValueError("no feature files found in the given sources")
    _check_same_dims(refs)
    return refs


def validate_all(refs: Sequence[FeatureRef]) -> int:
    """Cheaply re-check the headers of many feature files before training.

    Every file must exist, be readable, have a header consistent with its
    size, and still match its :class:`FeatureRef`; all refs must have the
    same number of features.

    Parameters
    ----------
    refs : sequence of FeatureRef
        Files to check.

    Returns
    -------
    int
        Total number of frames.

    Raises
    ------
    FeatureFileError
        For the first bad file.
    ValueError
        If ``refs`` is empty.
    """
    refs = list(refs)
    if not refs:
        raise ValueError("no feature files to validate")
    _check_same_dims(refs)
    with _open_files() as files:
        for ref in refs:
            ops = _FORMATS[ref.fmt]
            with _reading(ref.path, ref.key, ref.fmt):
                n_frames, n_features = ops.header(ref.path, ref.key, files)
            _check_matches_ref(ref, n_frames, n_features)
    return sum(ref.n_frames for ref in refs)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _fill(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    if not isinstance(ref, FeatureRef):
        raise TypeError(f"expected a FeatureRef, got {type(ref).__name__}")
    _check_counts(ref.n_frames, ref.n_features, ref.path, ref.key, ref.fmt)
    with _reading(ref.path, ref.key, ref.fmt):
        _FORMATS[ref.fmt].fill(ref, out, files)
    _check_finite(ref, out)


def load(ref: FeatureRef, dtype=np.float32) -> np.ndarray:
    """Load one feature matrix, fully validated.

    Parameters
    ----------
    ref : FeatureRef
        What to load (from :func:`describe` or :func:`list_features`).
    dtype : numpy floating dtype, optional
        Output dtype (default float32).

    Returns
    -------
    ndarray, shape (ref.n_frames, ref.n_features)
        C-contiguous array of ``dtype``.

    Raises
    ------
    FeatureFileError
        If the file is missing, unreadable, truncated, has a bad HTK
        ``sampSize``, is non-numeric, has zero frames, does not match the
        shape in ``ref``, or contains NaN/Inf (the message gives the first
        bad row).
    ValueError
        If ``dtype`` is not a floating-point type.
    """
    return load_many([ref], dtype)


def load_many(refs: Sequence[FeatureRef], dtype=np.float32) -> np.ndarray:
    """Load several feature matrices into one preallocated array.

    Parameters
    ----------
    refs : sequence of FeatureRef
        Files to load, all with the same ``n_features``.
    dtype : numpy floating dtype, optional
        Output dtype (default float32).

    Returns
    -------
    ndarray, shape (sum of n_frames, n_features)
        C-contiguous; rows of ``refs[0]`` first, then ``refs[1]``, ...

    Raises
    ------
    FeatureFileError
        As for :func:`load`, for the first bad file, or if dimensionalities
        differ.
    ValueError
        If ``refs`` is empty or ``dtype`` is not floating-point.

    Notes
    -----
    The output is allocated once and each file is read into its slice, so
    peak memory is the output plus at most one file's worth of temporary
    data (none for HTK to float32, npy and HDF5).
    """
    refs = list(refs)
    if not refs:
        raise ValueError("no feature files to load")
    dt = _float_dtype(dtype)
    for ref in refs:
        if not isinstance(ref, FeatureRef):
            raise TypeError(f"expected FeatureRef objects, got {type(ref).__name__}")
    n_features = _check_same_dims(refs)
    out = np.empty((sum(ref.n_frames for ref in refs), n_features), dtype=dt)
    start = 0
    with _open_files() as files:
        for ref in refs:
            _fill(ref, out[start:start + ref.n_frames], files)
            start += ref.n_frames
    return out


# ---------------------------------------------------------------------------
# Balancing
# ---------------------------------------------------------------------------


def assign_balanced(refs: Sequence[FeatureRef | int], n_shards: int) -> list[list[int]]:
    """Assign files to shards so that total frame counts are balanced.

    Greedy longest-processing-time scheduling: files are taken by
    decreasing ``n_frames`` (ties: lower index first) and each goes to the
    shard with the fewest frames so far (ties: lower shard index).

    Parameters
    ----------
    refs : sequence of FeatureRef or int
        Files (or plain frame counts).
    n_shards : int
        Number of shards (e.g. engines), at least 1.  Shards may end up
        empty if there are fewer files than shards.

    Returns
    -------
    list of list of int, length n_shards
        ``shards[s]`` holds the indices into ``refs`` assigned to shard
        ``s``, in increasing (original list) order.  Deterministic.

    Raises
    ------
    ValueError
        If ``n_shards < 1`` or ``refs`` is empty.
    """
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise ValueError(f"n_shards must be an int >= 1, got {n_shards!r}")
    sizes = [int(r.n_frames) if isinstance(r, FeatureRef) else int(r) for r in refs]
    if not sizes:
        raise ValueError("no feature files to assign")
    if min(sizes) < 0:
        raise ValueError("frame counts must be non-negative")
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    heap = [(0, s) for s in range(int(n_shards))]  # (frames so far, shard index)
    shards: list[list[int]] = [[] for _ in range(int(n_shards))]
    for i in order:
        total, s = heapq.heappop(heap)
        shards[s].append(i)
        heapq.heappush(heap, (total + sizes[i], s))
    return [sorted(shard) for shard in shards]


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a fresh empty temp file next to ``path``; move it over ``path`` on success.

    The one atomic writer of ipem (features, models, checkpoints, scores, audio):
    on any exception the temporary file is removed and ``path`` is untouched.
    """
    directory, base = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _as_matrix(X, what: str = "X") -> np.ndarray:
    """Validate a matrix for writing; return it as float32/float64, C-contiguous."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (frames x features), got shape {X.shape}")
    if X.dtype.hasobject or X.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be numeric, got dtype {X.dtype}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{what} must have at least one frame and one feature, got shape "
                         f"{X.shape}")
    keep = X.dtype.kind == "f" and X.dtype.itemsize in (4, 8)
    dtype = X.dtype.newbyteorder("=") if keep else np.dtype(np.float32)
    return np.ascontiguousarray(X, dtype=dtype)


def write(path: PathLike, X, fmt: str | None = None, *, key: str | None = None,
          sample_period: int = 100000, parm_kind: int = _HTK_USER) -> FeatureRef:
    """Atomically write one feature matrix.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; replaced if it exists.
    X : array_like, shape (n_frames, n_features)
        Numeric data, at least one frame.  float32/float64 are stored as is
        for npy and HDF5 (other types as float32); HTK always stores float32.
        Non-finite values are written unchanged.
    fmt : {"htk", "npy", "h5"} or None, optional
        Format; inferred from the extension when ``None``.  For Kaldi use
        :func:`write_kaldi`.
    key : str or None, optional
        HDF5 dataset name (default ``"features"``); must be ``None`` for HTK
        and npy.
    sample_period : int, optional
        HTK frame period in 100 ns units (default 100000 = 10 ms).
    parm_kind : int, optional
        HTK parameter kind (default 9, USER); compressed/CRC and integer
        kinds are refused.

    Returns
    -------
    FeatureRef
        Descriptor of the written file.

    Raises
    ------
    ValueError
        If ``X`` is not a non-empty numeric 2-D array, or the format or
        options are invalid.  No file (temporary or final) is left behind.
    """
    path = os.fspath(path)
    if fmt is None:
        fmt = infer_format(path)
    ops = _check_fmt(fmt)
    if ops.write is None:
        raise ValueError(f"write() does not handle {fmt!r}; use write_kaldi()")
    if fmt != "h5" and key is not None:
        raise ValueError(f"key is not used by the {fmt} format (got key={key!r})")
    if key is None:
        key = ops.default_key
    if fmt == "h5" and (not isinstance(key, str) or not key):
        raise ValueError(f"HDF5 dataset name must be a non-empty str, got {key!r}")
    X = _as_matrix(X)
    options = {"sample_period": sample_period, "parm_kind": parm_kind}
    with atomic_path(path) as tmp:
        ops.write(tmp, X, key, options)
    return FeatureRef(os.path.abspath(path), fmt, key, X.shape[0], X.shape[1])


def write_kaldi(ark_path: PathLike, scp_path: PathLike,
                utt2mat: Mapping[str, np.ndarray]) -> list[FeatureRef]:
    """Atomically write matrices to a Kaldi ark file and its scp index.

    Parameters
    ----------
    ark_path : str or os.PathLike
        Destination archive; the scp lines refer to it as given (relative
        paths are relative to the reader's working directory, as in Kaldi).
    scp_path : str or os.PathLike
        Destination script file, one ``utt-id ark_path:offset`` line per
        matrix, in mapping order.
    utt2mat : mapping of str to array_like, each shape (n_frames, n_features)
        Utterance id (non-empty, no whitespace) to matrix.  float64 data is
        stored as double (DM), everything else as float (FM).

    Returns
    -------
    list of FeatureRef
        One per utterance, in mapping order.

    Raises
    ------
    ValueError
        If there are no utterances, an id is invalid, or a matrix is not a
        non-empty numeric 2-D array.  Nothing is left behind on failure.
    """
    ark_path, scp_path = os.fspath(ark_path), os.fspath(scp_path)
    if _is_pipe(ark_path) or _is_pipe(scp_path):
        raise ValueError("write_kaldi() writes files, not pipes")
    arrays: dict[str, np.ndarray] = {}
    for utt, mat in utt2mat.items():
        if not isinstance(utt, str) or not utt or re.search(r"\s", utt):
            raise ValueError(f"invalid Kaldi utterance id {utt!r} (non-empty, no whitespace)")
        arrays[utt] = _as_matrix(mat, f"matrix for utterance {utt!r}")
    if not arrays:
        raise ValueError("no matrices to write")
    with atomic_path(scp_path) as tmp_scp, atomic_path(ark_path) as tmp_ark:
        index = io.StringIO()
        kaldiio.save_ark(tmp_ark, arrays, scp=index)
        offsets = [int(line.rsplit(":", 1)[1]) for line in index.getvalue().splitlines()]
        with open(tmp_scp, "w", encoding="utf-8") as f:
            for utt, offset in zip(arrays, offsets):
                f.write(f"{utt} {ark_path}:{offset}\n")
    abs_ark = os.path.abspath(ark_path)
    return [FeatureRef(f"{abs_ark}:{offset}", "kaldi", utt, *arrays[utt].shape)
            for utt, offset in zip(arrays, offsets)]
