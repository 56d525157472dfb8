"""K-means: ``kmeans`` (the estimator), ``lloyd`` (its shard functions),
``kmeans_plusplus`` (seeding over distributed frames)."""
from .kmeans import KMeans
from .kmeans_plusplus import kmeans_plusplus_distributed

__all__ = ["KMeans", "kmeans_plusplus_distributed"]
