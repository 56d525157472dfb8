"""The pipeline steps, chained through files: the functions the ``ipem`` command, the demo
and the notebooks call.

Read as a table of contents (as Kaldi's ``run.sh``)::

    module     step               data in                        -> files out
    ---------  -----------------  -----------------------------  ---------------------------------
    extract    extract            audio files (corpus root or    -> feature files (MFCC+deltas,
                                  data dir ``wav.scp``)             VAD, CMVN); ark/scp for Kaldi
    ubm        train_ubm          feature files                  -> UBM (EM with binary splitting)
    gmm        adapt              UBM + enrollment               -> speaker models (MAP, one task
                                                                    per speaker)
    gmm        score              UBM + models + trials          -> score file (LLR, one task per
                                                                    test segment)
    gmm        normalize          score file + cohort            -> score file (Z/T/ZT/S/AS-norm)
    ivector    train_ivector      UBM + utterances               -> extractor (total variability)
    ivector    extract_ivectors   extractor + utterances         -> i-vector file (one task per id)
    ivector    train_backend      i-vectors + speaker labels     -> back-end (LDA, WCCN, PLDA)
    ivector    score_ivectors     back-end + i-vectors + trials  -> score file (cosine or PLDA)
    backend    calibrate          dev score files + key          -> calibration (JSON; fusion)
    backend    apply_calibration  calibration + score files      -> score file (calibrated LLRs)
    backend    evaluate           target and non-target scores   -> EER, minDCF, actDCF, Cllr

Every step has the same shape: its inputs (paths or the objects read from
them) first, its outputs (``out``, ``out_dir``) by keyword, ``controller``
for where its tasks run -- a spec string as ``ipem --cluster`` takes
(``"local:4"``, ``"mpi:4"``, ``"profile:DIR"``), which the step starts after
its checks and stops when it ends (:func:`ipem.steps.cluster.running`, the
one place a step gets its cluster); ``None`` for in-process, or a
controller (:func:`ipem.as_controller`) -- and ``progress``.  Where the
features of list entries are is one :class:`ipem.speaker.FeatureSource`
(``source``); trial lists, keys and score files are read and written by
:mod:`ipem.speaker.scorefiles`.

Every step checks what it can before any work: its outputs can be written
(:mod:`ipem.io.preflight`), its lists are well formed (a model id, trial or
utterance given twice is refused with both line numbers), and the headers of
every feature file it will read are read, so that a missing or broken file is
found before the first task.  Steps that write a directory of files
(:func:`extract`, :func:`adapt`) write it all or nothing
(:func:`ipem.io.atomic.atomic_directory`).  The steps only log (through
:mod:`logging`, loggers ``ipem.steps.*``); printing is left to their callers.

Adding a step: a function of this shape in the module of its family (or a
new module), and one line in the import list below.
"""
from .backend import apply_calibration, calibrate, evaluate, format_metrics
from .cluster import running
from .extract import extract
from .gmm import adapt, normalize, score
from .ivector import (BACKENDS, extract_ivectors, format_ivector_record, read_labels,
                      score_ivectors, train_backend, train_ivector)
from .ubm import format_ubm_record, train_ubm

__all__ = ["extract", "train_ubm", "format_ubm_record", "adapt", "score", "normalize",
           "train_ivector", "extract_ivectors", "train_backend", "score_ivectors",
           "format_ivector_record", "read_labels", "BACKENDS", "calibrate", "apply_calibration",
           "evaluate", "format_metrics", "running"]
