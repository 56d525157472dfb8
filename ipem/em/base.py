"""One estimator base: ``fit`` written once as a template method.

:class:`EMEstimator.fit` validates the input, distributes it with the
estimator's controller (or uses an already distributed dataset where it
lives), draws the random state, runs the best of ``n_init`` initialisations
through :class:`~ipem.em.driver.EMLoop`, warns when EM did not converge, sets
the fitted attributes and frees what it distributed.  A model supplies the
hooks.  Public, because the driver calls them (:class:`~ipem.em.hooks.EMHooks`):

``initialize(data, rng, given) -> params``
``e_step(data, params) -> (stats, shard_times)`` and ``m_step(stats, params, data)``
    ``-> (params, objective, info)``; see :mod:`ipem.em.hooks`
``is_converged(record) -> bool``
    default: ``abs(record.change) < tol``

and private, because only this template calls them:

``_check_params(n_features) -> dict``
    validate hyper-parameters; return user-given initial parameters
``_n_init() -> int``, ``_min_samples() -> int``
``_finish_run(data, result)``
    after each initialisation's EM (k-means: the final inertia)
``_warm_objective() -> float or None``
    the previous fit's objective when warm-starting (first convergence test)
``_set_fitted(result, data)``
``_fit_runs(data, rng, given) -> EMResult``
    overridden by staged training (:mod:`ipem.em.staged`)

A controller is configuration, not state: ``clone`` and ``get_params`` hand
on the same controller object, and pickling a model keeps the model, not the
controller or the callbacks.  Pickling a model whose controller holds engines
issues a :class:`ControllerNotPickledWarning` (once per controller): a copy
unpickled in a joblib worker (``GridSearchCV(n_jobs=2)``) fits in that worker.
"""
from __future__ import annotations

import logging
import time
import warnings
import weakref

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..parallel import DistributedData, LocalController, Shard, as_controller
from ..validation import validate_frames, validate_sample_weight
from .driver import EMLoop

logger = logging.getLogger(__name__)


class EMEstimator(BaseEstimator):
    """Base of the estimators fitted by EM over a controller; see the module docstring."""

    #: whether a larger objective is better (log-likelihood) or worse (inertia)
    _maximize = True
    #: whether ``fit`` warns (ConvergenceWarning) when EM stopped before converging
    _warn_unconverged = True
    #: what a row of ``X`` is, for the controller's blocks (``Controller.rows_per_block``)
    _row_unit = "frames"

    # --- hooks with defaults ------------------------------------------------
    def _n_init(self):
        return int(getattr(self, "n_init", 1))

    def _min_samples(self):
        return 1

    def is_converged(self, record):
        """EM stops when the objective changed by less than ``tol``.

        Parameters
        ----------
        record : IterationRecord

        Returns
        -------
        bool
        """
        return bool(abs(record.change) < self.tol)

    def _finish_run(self, data, result):
        pass

    def _warm_objective(self):
        """Objective of the previous fit when this one continues it (warm start), else None.

        EM's first convergence test then compares with it, as an uninterrupted
        run would (scikit-learn's ``warm_start`` does the same with ``lower_bound_``).
        """
        return None

    # --- the template -------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the model parameters with EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DistributedData
            Frames; an array is distributed with ``controller`` for the
            duration of the fit, a DistributedData is used where it lives.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Per-frame weights (arrays only); None: every frame counts once.

        Returns
        -------
        self
        """
        self._fit(X, sample_weight)
        return self

    def _fit(self, X, sample_weight, keep=None):
        """Fit; ``keep(data)`` runs on the fitted data before it is freed."""
        data, owned = self._fit_data(X, sample_weight)
        try:
            given = self._check_params(data.n_features)
            rng = check_random_state(self.random_state)
            result = self._fit_runs(data, rng, given)
            self._set_fitted(result, data)
            out = data.controller.retry_lost(lambda: keep(data)) if keep is not None else None
        finally:
            if owned:
                data.free()  # never raises: the error that brought us here stays the error
        if self._warn_unconverged and not result.converged and result.n_iter > 0:
            # scikit-learn's words (its tests match them), then which model and how far
            warnings.warn("Best performing initialization did not converge. Try different "
                          "init parameters, or increase max_iter, tol, or check for "
                          f"degenerate data. ({type(self).__name__} stopped after "
                          f"{result.n_iter} iterations.)", ConvergenceWarning, stacklevel=3)
        return out

    def _fit_data(self, X, sample_weight):
        """Validate ``X`` and return ``(data, owned)``."""
        min_samples = self._min_samples()
        if isinstance(X, DistributedData):
            if sample_weight is not None:
                raise ValueError("sample_weight cannot be given with a DistributedData: "
                                 "distribute the weights with the frames "
                                 "(controller.distribute(X, sample_weight))")
            validate_frames(self, X, reset=True, min_samples=min_samples)
            return X, False
        Xv = validate_frames(self, X, reset=True, min_samples=min_samples)
        w = validate_sample_weight(sample_weight, Xv.shape[0])
        return as_controller(self.controller).distribute(Xv, w, unit=self._row_unit), True

    def _fit_runs(self, data, rng, given):
        """The best of ``n_init`` EM runs (one when warm-starting)."""
        best = None
        t_start = time.perf_counter()
        callbacks = self._callbacks()
        ctrl = data.controller
        for _ in range(self._n_init()):
            params = initialize_recovering(self, data, rng, given)
            result = EMLoop(self, data, callbacks=callbacks, start_time=t_start).run(
                params, self.max_iter, previous=self._warm_objective())
            ctrl.retry_lost(lambda: self._finish_run(data, result))
            if best is None or (result.objective > best.objective if self._maximize
                                else result.objective < best.objective):
                best = result
        return best

    # --- prediction helpers -------------------------------------------------
    def _predict_frames(self, X, func, *args):
        """Apply a shard function to the frames of ``X``; results concatenated.

        ``X`` may be an array (processed here, in-process) or a
        :class:`DistributedData` (processed where its shards live).
        """
        check_is_fitted(self)
        Xv = validate_frames(self, X, reset=False)
        if isinstance(Xv, DistributedData):
            return np.concatenate(Xv.controller.map(func, Xv, *args), axis=0)
        return func(Shard(X=Xv, index=0, offset=0), *args)

    def _callbacks(self):
        cbs = self.callbacks
        if cbs is None:
            cbs = []
        elif callable(cbs):
            cbs = [cbs]
        cbs = list(cbs)
        if self.verbose:
            cbs.append(LogProgress(type(self).__name__, getattr(self, "verbose_interval", 1)))
        return cbs

    # --- pickling: the model, not the controller or the callbacks ----------
    def __getstate__(self):
        state = dict(super().__getstate__())
        ctrl = state.get("controller")
        if not (ctrl is None or isinstance(ctrl, int)):
            state["controller"] = None  # a Controller or a DirectView: engines are not pickled
            # a fitted model pickled to be kept needs no warning: what a joblib worker
            # receives is an unfitted clone, to be fitted there
            if not isinstance(ctrl, LocalController) and not _is_fitted(self):
                _warn_engines_left_behind(self, ctrl)
        state["callbacks"] = None
        return state


class ControllerNotPickledWarning(UserWarning):
    """A model holding engines was pickled: a copy unpickled elsewhere fits in-process.

    The usual cause is joblib: ``GridSearchCV(..., n_jobs=2)`` or
    ``cross_val_score(..., n_jobs=2)`` pickle the estimator to worker processes,
    whose fits then run in those processes, not on the engines.  Issued once
    per controller.
    """


_WARNED_CONTROLLERS = weakref.WeakSet()


def _is_fitted(model):
    """Whether ``model`` has been fitted (scikit-learn's test: fitted attributes exist)."""
    try:
        check_is_fitted(model)
    except NotFittedError:
        return False
    return True


def _warn_engines_left_behind(model, ctrl):
    """Warn (once per controller) that a pickled copy of ``model`` has no engines."""
    try:
        if ctrl in _WARNED_CONTROLLERS:
            return
        _WARNED_CONTROLLERS.add(ctrl)
    except TypeError:      # not weakly referable: warn every time rather than never
        pass
    msg = (f"{type(model).__name__} is pickled without its controller {ctrl!r}: a copy "
           "unpickled in another process, such as a joblib worker of GridSearchCV(n_jobs>1) "
           "or cross_val_score(n_jobs>1), fits in that process, NOT on the engines. Use "
           "n_jobs=1 to fit on the engines (they already parallelise each fit). This warning "
           "is issued once per controller.")
    logger.warning(msg)
    warnings.warn(msg, ControllerNotPickledWarning, stacklevel=3)


def initialize_recovering(model, data, rng, given):
    """``model.initialize(data, rng, given)``, repeated from the same random state
    when an engine is lost (so a recovered fit starts where an undisturbed one does)."""
    state = rng.get_state()

    def init():
        rng.set_state(state)
        return model.initialize(data, rng, given)

    return data.controller.retry_lost(init)


class LogProgress:
    """Callback that logs every ``interval``-th iteration record (``verbose=1``).

    The records go to the ``ipem`` logger at INFO level; when nothing has
    configured logging, a handler to stderr is added so that ``verbose``
    shows them, as scikit-learn's ``verbose`` does.
    """

    def __init__(self, name, interval=1):
        self.name = name
        self.interval = max(int(interval), 1)
        root = logging.getLogger("ipem")
        if not root.handlers and not logging.getLogger().handlers:
            root.addHandler(logging.StreamHandler())
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)

    def __call__(self, record):
        if record.iteration % self.interval == 0 or record.iteration == 1:
            stage = f" K={record.stage}" if record.stage is not None else ""
            logger.info("%s%s iter %4d  objective %.6f  change %.3e  %.1f ms", self.name, stage,
                        record.iteration, record.objective, record.change, record.time * 1e3)


def sample_distinct(rng, n, k):
    """``k`` distinct indices in ``[0, n)`` in random order, without O(n) memory.

    For ``k`` small against ``n`` (the usual case: K components, N frames) indices
    are drawn with replacement and duplicates dropped until ``k`` remain; otherwise
    a permutation is used.

    Parameters
    ----------
    rng : numpy.random.RandomState
    n, k : int

    Returns
    -------
    ndarray of shape (k,), int64
    """
    if k > n:
        raise ValueError(f"cannot draw {k} distinct indices from {n}")
    if 4 * k >= n:
        return rng.permutation(n)[:k].astype(np.int64)
    chosen = {}
    while len(chosen) < k:
        for i in rng.randint(n, size=2 * (k - len(chosen))):
            chosen.setdefault(int(i), None)
            if len(chosen) == k:
                break
    return np.fromiter(chosen, dtype=np.int64, count=k)
