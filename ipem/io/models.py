"""The model and checkpoint file format: plain ``.npz`` arrays, never pickle.

A UBM model file (written by :meth:`ipem.UBMTrainer.save`) and a training
checkpoint are NumPy ``.npz`` archives read with ``allow_pickle=False``.
They hold at least

``weights`` : ndarray of shape (n_components,)
``means`` : ndarray of shape (n_components, n_features)
``covariances`` : ndarray of shape (n_components, n_features)
    Diagonal variances.
``history_json`` : 0-d str array, optional
    The :class:`ipem.IterationRecord` history as JSON
    (:func:`ipem.em.records.records_to_json`, re-exported here); non-finite
    floats are stored as strings.

and, for checkpoints, the training position plus the random generator
state as three arrays (:func:`rng_to_arrays`).  Files are written with
:func:`ipem.io.atomic.save_npz_atomic`.

These files may come from elsewhere, so nothing in them is trusted
(:func:`read_npz`): the zip directory and every array's ``.npy`` header are
checked against size limits *before* anything is decompressed or allocated
(a few megabytes of compressed zeros cannot claim gigabytes of memory),
pickled objects are never read, and :func:`check_gmm` checks the model
itself (shapes, finite values, positive variances, weights summing to 1).
A file that fails raises a one-line ValueError, ``not a valid ipem model
file: <path> (<what is wrong>)``.

Model files of speakers live in a models directory as ``<model_id>.npz``;
:func:`model_file` builds that name and refuses ids that would reach
outside the directory (:func:`check_model_id`).
"""
from __future__ import annotations

import math
import os
import stat
import struct
import zipfile
import zlib
from typing import Mapping

import numpy as np

from ..em.records import IterationRecord, records_from_json, records_to_json
from .preflight import open_regular

__all__ = ["MAX_ARRAY_BYTES", "MAX_TEXT_BYTES", "OTHER_KINDS", "array_limits", "check_gmm",
           "check_model_id", "declared_kind", "history_from", "invalid_model_file", "load_model",
           "max_file_bytes", "model_file", "read_member", "read_npz",
           "records_from_json", "records_to_json", "rng_from_arrays", "rng_to_arrays",
           "text_scalar"]

#: Largest array (bytes, uncompressed) read where the model size is not known:
#: 128 MiB, e.g. 32768 Gaussians x 512 features in float64.
MAX_ARRAY_BYTES = 1 << 27
#: Largest text array (JSON history, settings), in bytes (4 per character).
MAX_TEXT_BYTES = 1 << 26
#: Largest array not named in the limits (scalars, small vectors, ids), in bytes.
SMALL_ARRAY_BYTES = 1 << 12
#: Most arrays one file may hold.
MAX_MEMBERS = 64
_MAX_HEADER = 10000            # numpy's own limit on a .npy header
_RNG_BYTES = 624 * 8


def invalid_model_file(path, problem) -> ValueError:
    """The error for a model or checkpoint file that fails a check.

    Returns
    -------
    ValueError
        ``"not a valid ipem model file: <path> (<problem>)"``.
    """
    return ValueError(f"not a valid ipem model file: {os.fspath(path)} ({problem})")


def array_limits(n_components=None, n_features=None) -> dict[str, int]:
    """Largest size in bytes of each array of a model or checkpoint file.

    Parameters
    ----------
    n_components, n_features : int, optional
        The model size, where known (an upper bound is enough); without
        them the model arrays get :data:`MAX_ARRAY_BYTES`.

    Returns
    -------
    dict
        Array name -> bytes, for :func:`read_npz`: 8 bytes (float64) per
        expected element; :data:`MAX_TEXT_BYTES` for the JSON texts.
    """
    k, d = n_components, n_features
    vec_k = MAX_ARRAY_BYTES if k is None else 8 * int(k)
    vec_d = MAX_ARRAY_BYTES if d is None else 8 * int(d)
    mat = MAX_ARRAY_BYTES if k is None or d is None else 8 * int(k) * int(d)
    return {"weights": vec_k, "means": mat, "covariances": mat, "variances": mat,
            "data_mean": vec_d, "data_var": vec_d, "rng_keys": _RNG_BYTES,
            "history_json": MAX_TEXT_BYTES, "settings_json": MAX_TEXT_BYTES,
            "identity_json": MAX_TEXT_BYTES, "provenance_json": MAX_TEXT_BYTES}


class _Invalid(Exception):
    """What is wrong with a file (the caller adds the file name)."""


def read_npz(path, limits: Mapping[str, int] | None = None, *,
             default_limit: int = SMALL_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file, trusting nothing in it.

    Before an array is decompressed, its uncompressed size in the zip
    directory and then the shape and dtype in its ``.npy`` header are
    checked against its limit; the bytes that come out are bounded by the
    size in the directory, and the zip CRC is checked.  Only numbers, booleans
    and text are read (never pickled objects).

    Parameters
    ----------
    path : str or os.PathLike
    limits : mapping of str to int, optional
        Largest data size in bytes of each array, by name (e.g.
        :func:`array_limits`).
    default_limit : int, optional
        Limit of the arrays ``limits`` does not name (4 KiB).

    Returns
    -------
    dict
        Array name -> ndarray (writable copies).

    Raises
    ------
    ValueError
        ``"not a valid ipem model file: <path> (<problem>)"`` for an empty,
        truncated or corrupt zip file, a member that is not an ``.npy``
        array, an array over its limit, pickled objects or a structured
        dtype, a header that disagrees with the data; ``"<path>: cannot read
        the model file (...)"`` for a missing or unreadable file.
    """
    path = os.fspath(path)
    limits = {} if limits is None else limits
    try:
        # a regular file no larger than every array at its limit (+1% for deflate's worst
        # case): a FIFO or /dev/zero is refused before zipfile reads a byte
        fh = open_regular(path, "", max_file_bytes(limits, default_limit))
    except ValueError as exc:
        raise ValueError(f"{path}: cannot read the model file "
                         f"({str(exc).removeprefix(path + ' is ')})") from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ValueError(f"{path}: cannot read the model file ({exc.strerror})") from None
    except OSError as exc:
        raise invalid_model_file(path, f"{type(exc).__name__}: {exc}") from None
    try:
        with fh, zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise _Invalid(f"{len(infos)} arrays; ipem files have at most {MAX_MEMBERS}")
            out = {}
            for info in infos:
                key = info.filename[:-4] if info.filename.endswith(".npy") else ""
                if not key or "/" in key or key in out:
                    raise _Invalid(f"unexpected member {info.filename!r} (not an .npy array, "
                                   "or a repeated one)")
                limit = int(limits.get(key, default_limit))
                if info.file_size > limit + _MAX_HEADER:
                    raise _Invalid(f"array {key!r} is {info.file_size} bytes uncompressed, more "
                                   f"than the {limit} expected")
                out[key] = _read_member(zf, info, key, limit)
    except _Invalid as exc:
        raise invalid_model_file(path, exc) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ValueError(f"{path}: cannot read the model file ({exc.strerror})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error,
            NotImplementedError, UnicodeDecodeError, OverflowError) as exc:
        raise invalid_model_file(path, f"{type(exc).__name__}: {exc}") from None
    return out


def max_file_bytes(limits: Mapping[str, int] | None = None,
                   default_limit: int = SMALL_ARRAY_BYTES) -> int:
    """Largest ``.npz`` file :func:`read_npz` reads with these limits, in bytes.

    Every array at its limit (those ``limits`` does not name at
    ``default_limit``, up to :data:`MAX_MEMBERS` arrays), each with its
    ``.npy`` header and zip entries, plus 1% for deflate's worst case.
    """
    limits = {} if limits is None else limits
    per_member = _MAX_HEADER + 2048
    named = sum(int(v) + per_member for v in limits.values())
    rest = max(MAX_MEMBERS - len(limits), 0) * (int(default_limit) + per_member)
    total = named + rest
    return total + total // 100 + 65536


def array_shape(path, key: str):
    """The shape of array ``key`` of an ``.npz`` file, from its ``.npy`` header alone.

    Cheap enough to check thousands of model files against their UBM before
    a cluster starts; the arrays are checked in full where they are read.

    Returns
    -------
    tuple of int or None
        None when the file has no such array or its header cannot be read
        (the full read then says what is wrong).
    """
    path = os.fspath(path)
    try:
        with open_regular(path, "", max_file_bytes(array_limits())) as fh, \
                zipfile.ZipFile(fh) as zf:
            with zf.open(f"{key}.npy") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    return np.lib.format.read_array_header_1_0(f, _MAX_HEADER)[0]
                if version == (2, 0):
                    return np.lib.format.read_array_header_2_0(f, _MAX_HEADER)[0]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error,
            struct.error, NotImplementedError, UnicodeDecodeError, OverflowError):
        pass
    return None


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, limit: int,
                path) -> np.ndarray:
    """One array of an open ``.npz`` archive, checked as :func:`read_npz` checks each.

    Raises
    ------
    ValueError
        :func:`invalid_model_file` naming ``path`` and the problem.
    """
    try:
        return _read_member(zf, info, key, limit)
    except _Invalid as exc:
        raise invalid_model_file(path, exc) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, struct.error,
            NotImplementedError, UnicodeDecodeError, OverflowError) as exc:
        raise invalid_model_file(path, f"{type(exc).__name__}: {exc}") from None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, limit: int) -> np.ndarray:
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, _MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, _MAX_HEADER)
        else:
            raise _Invalid(f"array {key!r}: unsupported .npy format version {version}")
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None \
                or dtype.kind not in "biufU":
            raise _Invalid(f"array {key!r} has dtype {dtype}; ipem files hold numbers and text "
                           "only, never pickled objects")
        if any(n < 0 for n in shape):
            raise _Invalid(f"array {key!r}: negative shape {shape} in its header")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > limit:
            raise _Invalid(f"array {key!r}: its header claims shape {shape} of {dtype} "
                           f"({nbytes} bytes), more than the {limit} bytes expected")
        stored = info.file_size - f.tell()
        if stored != nbytes:
            raise _Invalid(f"array {key!r}: its header claims {nbytes} bytes of data, the file "
                           f"holds {stored}")
        raw = f.read()  # at most info.file_size bytes come out; the CRC is checked at the end
    if len(raw) != nbytes:
        raise _Invalid(f"array {key!r} is truncated ({len(raw)} of {nbytes} bytes)")
    arr = np.frombuffer(raw, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C").copy()


def text_scalar(z: Mapping[str, np.ndarray], key: str, path, default: str | None = None) -> str:
    """The string stored as a 0-d text array ``z[key]``.

    Raises
    ------
    ValueError
        :func:`invalid_model_file` if it is missing (and there is no
        ``default``) or not a 0-d text array.
    """
    if key not in z:
        if default is None:
            raise invalid_model_file(path, f"no {key!r}")
        return default
    a = z[key]
    if a.ndim != 0 or a.dtype.kind != "U":
        raise invalid_model_file(path, f"{key!r} is not a text scalar (shape {a.shape}, "
                                 f"dtype {a.dtype})")
    return str(a)


def check_gmm(weights, means, variances, path, *, n_components=None, n_features=None,
              names=("weights", "means", "covariances")):
    """Check the diagonal GMM read from a model file.

    Parameters
    ----------
    weights : ndarray of shape (n_components,)
    means, variances : ndarray of shape (n_components, n_features)
    path : str or os.PathLike
        The file, for messages.
    n_components, n_features : int, optional
        The size the model must have.
    names : tuple of str, optional
        How messages call the three arrays.

    Returns
    -------
    weights, means, variances : float64 ndarrays

    Raises
    ------
    ValueError
        :func:`invalid_model_file` naming the problem: a non-float array, a
        shape that is not (K,), (K, D), (K, D) or not the size expected,
        NaN or Inf, a negative weight, weights not summing to 1 (within
        1e-6), a variance that is not positive.
    """
    arrays = (weights, means, variances)
    for name, a in zip(names, arrays):
        if a.dtype.kind != "f":
            raise invalid_model_file(path, f"{name} have dtype {a.dtype}, expected floats")
    w, m, v = (np.asarray(a, dtype=np.float64) for a in arrays)
    if w.ndim != 1 or w.size == 0 or m.ndim != 2 or m.shape[0] != w.size or m.shape[1] == 0 \
            or v.shape != m.shape:
        raise invalid_model_file(path, f"{names[0]}, {names[1]}, {names[2]} have shapes "
                                 f"{w.shape}, {m.shape}, {v.shape}; expected (K,), (K, D), "
                                 "(K, D)")
    k, d = m.shape
    if (n_components is not None and k != n_components) or \
            (n_features is not None and d != n_features):
        want = f"{'K' if n_components is None else n_components} x " \
               f"{'D' if n_features is None else n_features}"
        raise invalid_model_file(path, f"{k} components x {d} features, expected {want}")
    for name, a in zip(names, (w, m, v)):
        if not np.all(np.isfinite(a)):
            raise invalid_model_file(path, f"{name} contain NaN or Inf")
    if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-6:
        raise invalid_model_file(path, f"{names[0]} must be non-negative and sum to 1 "
                                 f"(sum {w.sum():.8g})")
    if np.any(v <= 0):
        raise invalid_model_file(path, f"{names[2]} must be positive")
    return w, m, v


def check_model_id(model_id) -> str:
    """A model id that can name a file inside a models directory.

    Parameters
    ----------
    model_id : str or int

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an empty id, ``.`` or ``..``, or an id with ``/``, ``\\`` or a
        NUL byte (which includes absolute paths): such an id would load a
        model from outside the models directory.
    """
    name = str(model_id)
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") \
            or os.path.isabs(name):
        raise ValueError(f"model id {name!r} cannot name a model file: ids with '/', '\\', "
                         "'..' or absolute paths would reach outside the models directory")
    return name


def model_file(models_dir, model_id) -> str:
    """``<models_dir>/<model_id>.npz``, for an id :func:`check_model_id` accepts.

    Raises
    ------
    ValueError
        As :func:`check_model_id`.
    """
    return os.path.join(os.fspath(models_dir), f"{check_model_id(model_id)}.npz")


def rng_to_arrays(rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """State of a legacy MT19937 ``RandomState`` as plain arrays.

    Parameters
    ----------
    rng : numpy.random.RandomState

    Returns
    -------
    dict
        ``rng_keys`` : uint32 ndarray of shape (624,), the key vector;
        ``rng_meta`` : int64 ndarray of shape (2,), position and has-gauss flag;
        ``rng_cached`` : float ndarray of shape (1,), the cached Gaussian.
    """
    name, keys, pos, has_gauss, cached = rng.get_state()
    return {"rng_keys": keys, "rng_meta": np.array([pos, has_gauss], dtype=np.int64),
            "rng_cached": np.array([cached])}


def rng_from_arrays(z: Mapping[str, np.ndarray]) -> np.random.RandomState:
    """Rebuild a ``RandomState`` from the arrays of :func:`rng_to_arrays`.

    Parameters
    ----------
    z : mapping
        Holds ``rng_keys`` (624,), ``rng_meta`` (2,) and ``rng_cached`` (1,),
        e.g. an open ``.npz`` file or the dict of :func:`load_model`.

    Returns
    -------
    numpy.random.RandomState
        In exactly the saved state.
    """
    rng = np.random.RandomState()
    rng.set_state(("MT19937", z["rng_keys"], int(z["rng_meta"][0]), int(z["rng_meta"][1]),
                   float(z["rng_cached"][0])))
    return rng


def history_from(z: dict, path) -> list[IterationRecord]:
    """Pop ``history_json`` from the arrays of a model file and parse it.

    Raises
    ------
    ValueError
        :func:`invalid_model_file` if it is not a JSON list of records.
    """
    text = text_scalar(z, "history_json", path, default="[]")
    z.pop("history_json", None)
    try:
        records = records_from_json(text)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise invalid_model_file(path, f"history_json is not a training history: "
                                 f"{type(exc).__name__}: {exc}") from None
    return records


#: The ``kind`` that ipem's other ``.npz`` files declare, and what each is called
#: in the error when one is given where a UBM is expected.
OTHER_KINDS = {
    "ipem-ivector-extractor": "an i-vector extractor",
    "ipem-ivector-checkpoint": "an i-vector training checkpoint",
    "ipem-ivectors": "an i-vector file",
    "ipem-ivector-backend": "an i-vector back-end",
    "ipem-speaker-model": "a speaker model",
}


def declared_kind(path) -> str | None:
    """The ``kind`` an ipem ``.npz`` file declares, read without reading anything else.

    Returns
    -------
    str or None
        E.g. ``"ipem-ivector-extractor"``; None where the file declares none
        (UBM files and checkpoints) or cannot be read (the full read then
        says why).
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):     # a FIFO or a device: never opened here
            return None
        with zipfile.ZipFile(os.fspath(path)) as zf:
            info = zf.getinfo("kind.npy")
            kind = _read_member(zf, info, "kind", SMALL_ARRAY_BYTES)
    except (KeyError, _Invalid, zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
            struct.error, NotImplementedError, UnicodeDecodeError, OverflowError):
        return None
    return str(kind[()]) if kind.ndim == 0 and kind.dtype.kind == "U" else None


def load_model(path, *, n_components=None, n_features=None) -> dict:
    """Read and check a model or checkpoint file written by :class:`ipem.UBMTrainer`.

    Parameters
    ----------
    path : str or os.PathLike
    n_components, n_features : int, optional
        The size the model must have, where known (also bounds what is read).

    Returns
    -------
    dict
        ``weights`` (K,), ``means`` (K, D), ``covariances`` (K, D), all
        float64, ``history`` (list of IterationRecord) and every other array
        in the file (for checkpoints, the training position and RNG state).

    Raises
    ------
    ValueError
        ``"not a valid ipem model file: <path> (...)"`` if the file is not a
        plain ``.npz`` within the size limits (:func:`read_npz`) or the model
        fails :func:`check_gmm`; ``"<path>: not an ipem model file (no
        'weights')"`` if an array is missing; ``"<path>: an i-vector
        extractor, not a UBM"`` for another kind of ipem file
        (:data:`OTHER_KINDS`).
    """
    # first: an extractor holds a UBM's arrays too, and a big T is over a UBM's limits
    other = OTHER_KINDS.get(declared_kind(path))
    if other is not None:
        raise ValueError(f"{os.fspath(path)}: {other}, not a UBM")
    out = read_npz(path, array_limits(n_components, n_features))
    for key in ("weights", "means", "covariances"):
        if key not in out:
            raise ValueError(f"{os.fspath(path)}: not an ipem model file (no '{key}')")
    out["weights"], out["means"], out["covariances"] = check_gmm(
        out["weights"], out["means"], out["covariances"], path, n_components=n_components,
        n_features=n_features)
    out["history"] = history_from(out, path)
    return out
