"""Gaussian mixtures: ``params`` (:class:`GMMParams`, the named weights, means and
covariances of a diagonal GMM, and :func:`ubm_params` that reads them from any usual
form), ``gaussian`` (the E-step over a controller, statistics, M-step and kernel
arguments shared by GaussianMixture, the UBM, MAP and scoring), ``gaussian_mixture``
(the estimator), ``ubm`` (staged UBM training with checkpoints)."""
from .gaussian_mixture import GaussianMixture
from .params import GMMParams, as_gmm_params, ubm_params
from .ubm import UBMTrainer

__all__ = ["GMMParams", "GaussianMixture", "UBMTrainer", "as_gmm_params", "ubm_params"]
