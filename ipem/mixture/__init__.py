"""Gaussian mixtures: ``gaussian`` (statistics, M-step and kernel arguments shared by
GaussianMixture, the UBM, MAP and scoring), ``gaussian_mixture`` (the estimator),
``ubm`` (staged UBM training with checkpoints)."""
from .gaussian_mixture import GaussianMixture
from .ubm import UBMTrainer

__all__ = ["GaussianMixture", "UBMTrainer"]
