"""Feature files, lists and the model/checkpoint formats (being split into modules)."""
from .features import *  # noqa: F401,F403
from .features import (FeatureFileError, FeatureRef, assign_balanced, atomic_path,  # noqa: F401
                       describe, list_features, load, load_many, validate_all, write,
                       write_kaldi)
