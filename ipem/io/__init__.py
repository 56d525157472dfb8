"""Files ipem reads and writes: speech features, lists, models, and the atomic writer.

The public API is re-exported here (``from ipem import io``;
``io.list_features(...)``).  What lives where:

==================  ===========================================================
module              contents
==================  ===========================================================
``refs``            :class:`FeatureRef`, :class:`FeatureFileError`,
                    :class:`~ipem.io.refs.FormatHandler` (what a format
                    declares)
``features``        :func:`describe`, :func:`list_features`,
                    :func:`validate_all`, :func:`load`, :func:`load_many`,
                    :func:`write` (any format)
``formats``         the format registry (``REGISTRY``, one line per format):
                    ``names()``, ``write_names()``, ``suffix(fmt)``,
                    ``FORMATS``, :func:`infer_format`
``htk``             HTK files: :func:`read_htk_header`, :class:`HTKHeader`
``kaldi``           Kaldi ark/scp via kaldiio: :func:`write_kaldi`
``datadir``         Kaldi data directories (``wav.scp``, ``feats.scp``,
                    ``utt2spk``, ``spk2utt``): :func:`read_data_dir`,
                    :func:`write_data_dir`
``npy``, ``hdf5``   NumPy ``.npy`` and HDF5 feature files (each format module
                    declares its ``HANDLER``)
``lists``           list files: :func:`is_list_file`, :func:`read_list`,
                    scp parsing and list expansion; shell commands (Kaldi
                    pipes) in lists refused unless ``allow_pipes=True``
``checks``          validation shared by the format modules
``atomic``          :func:`atomic_path`, :func:`save_npz_atomic`,
                    :func:`write_text_atomic`, :func:`atomic_directory`
``shards``          :func:`distribute_files`: a controller's dataset whose
                    shards read their own feature files
``preflight``       checks before a step runs: outputs writable, inputs
                    readable (``check_output_file`` ...)
``models``          the model/checkpoint ``.npz`` format: :func:`load_model`,
                    history and RNG state <-> arrays; bounded, pickle-free
                    reading (``read_npz``), model checks (``check_gmm``),
                    ``<model_id>.npz`` names (``model_file``)
==================  ===========================================================

Balancing files over engines is scheduling, not I/O:
:func:`ipem.parallel.scheduling.assign_balanced`.
"""
from .atomic import atomic_directory, atomic_path, save_npz_atomic, write_text_atomic
from .features import describe, list_features, load, load_many, validate_all, write
from .formats import FORMATS, infer_format
from .hdf5 import DEFAULT_H5_KEY
from .htk import HTKHeader, read_htk_header
from .kaldi import write_kaldi
from .datadir import DataDir, read_data_dir, write_data_dir
from .lists import is_list_file, is_scp_file, list_kind, read_list, read_lines, read_scp
from .models import load_model, records_from_json, records_to_json, rng_from_arrays, rng_to_arrays
from .refs import FeatureFileError, FeatureRef
from .shards import distribute_files

__all__ = [
    "DEFAULT_H5_KEY",
    "DataDir",
    "FORMATS",
    "FeatureFileError",
    "FeatureRef",
    "HTKHeader",
    "atomic_directory",
    "atomic_path",
    "describe",
    "distribute_files",
    "infer_format",
    "is_list_file",
    "is_scp_file",
    "list_features",
    "list_kind",
    "load",
    "load_many",
    "load_model",
    "read_htk_header",
    "read_lines",
    "read_data_dir",
    "read_list",
    "read_scp",
    "records_from_json",
    "records_to_json",
    "rng_from_arrays",
    "rng_to_arrays",
    "save_npz_atomic",
    "validate_all",
    "write",
    "write_data_dir",
    "write_kaldi",
    "write_text_atomic",
]
