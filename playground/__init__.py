"""Classify Playground: few-shot and custom text classification, offline.

>>> from playground import Example, classify
>>> classify(["This item broke after 3 weeks"],
...          [Example("The order is 5 days late", "negative"), ...])[0].prediction
"""

import os as _os

_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from .engine import Classification, FewShotModel, classify  # noqa: E402
from .evaluate import EvaluationReport, evaluate  # noqa: E402
from .store import load_model  # noqa: E402
from .training import train  # noqa: E402
from .validation import Example, ValidationError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Classification", "EvaluationReport", "Example", "FewShotModel", "ValidationError", "classify", "evaluate",
           "load_model", "train", "__version__"]
