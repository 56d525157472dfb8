"""The UBM step: feature files -> UBM (diagonal GMM by EM with binary splitting).

The engines read their own feature files; the client reads only their headers.
"""
from __future__ import annotations

import logging
import os

from ..io import FeatureRef, list_features
from ..io.atomic import remove_stale_temporaries
from ..io.preflight import check_input_file, check_output_file
from ..io.provenance import keys_digest, make_record, save_with_record, utterance_keys
from .chain import Checks, check_frontend
from .cluster import running

logger = logging.getLogger(__name__)

__all__ = ["format_ubm_record", "train_ubm"]


def train_ubm(feature_files, *, n_components, init="split", stage_iter=8, final_iter=20,
              tol=1e-3, variance_floor=0.1, seed=0, checkpoint=None, plot=None, out=None,
              controller=None, callbacks=None, engine_memory=None):
    """Train a diagonal UBM by EM with binary splitting; engines read their own files.

    Parameters
    ----------
    feature_files : sequence of str or FeatureRef, or str
        Feature files (e.g. from :meth:`ipem.speaker.FeatureSource.files`), Kaldi ``.scp`` or
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
        Save the trained model here (``UBMTrainer.save``), with its provenance
        record: the feature files trained on (:mod:`ipem.io.provenance`).
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:4"``) is started after the step's checks.
    callbacks : callable or list of callables, optional
        Called with every :class:`ipem.IterationRecord` (see
        :func:`format_ubm_record`).
    engine_memory : int or str, optional
        Memory of each engine process (``"1G"``); the frames that do not fit
        are streamed from the files (``UBMTrainer(engine_memory=...)``).

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
    # what a killed run left half-written next to them (.<name>.<12 hex>.tmp)
    remove_stale_temporaries([p for p in (out, checkpoint) if p is not None])
    if isinstance(plot, (str, os.PathLike)):
        image_format(plot)
    if callbacks is None:
        callbacks = []
    else:
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
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
    # the features' manifests (front-end, digests), read before the hours of training
    keys = utterance_keys(feature_files) if out is not None else []
    feature_fields = check_frontend(keys, None, None, Checks()) if out is not None else {}
    try:
        with running(controller) as ctrl:
            ubm = UBMTrainer(n_components, init=init, stage_iter=stage_iter,
                             final_iter=final_iter, tol=tol, variance_floor=variance_floor,
                             checkpoint=checkpoint, controller=ctrl, random_state=seed,
                             callbacks=callbacks, engine_memory=engine_memory)
            ubm.fit(feature_files)
    except BaseException:
        if own_plot is not None:
            try:
                own_plot.close()    # the plot of the iterations done, if it can be written
            except (OSError, ValueError) as exc:
                logger.warning("cannot write the convergence plot %s: %s", own_plot.path, exc)
        raise
    if out is not None:             # the model first: it is what the hours were spent on
        save_with_record(ubm.save, out, make_record(
            "ubm", utterances=keys, n_utterances=len(keys), utterances_digest=keys_digest(keys),
            **feature_fields))
        logger.info("UBM -> %s", out)
    if own_plot is not None:
        own_plot.close()
    return ubm


def format_ubm_record(record):
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
