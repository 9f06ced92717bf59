"""Classify Playground: few-shot and custom text classification, offline.

>>> from playground import Example, classify
>>> classify(["This item broke after 3 weeks"],
...          [Example("The order is 5 days late", "negative"), ...])[0].prediction
>>> classify(["This item broke after 3 weeks"], examples, explain=True)[0].explanation.strongest(3)
"""

from .engine import Classification, FewShotModel, load_model
from .evaluate import EvaluationReport, evaluate
from .explain import Explanation, classify
from .training import train
from .validation import Example, ValidationError

__version__ = "0.1.0"

__all__ = ["Classification", "EvaluationReport", "Example", "Explanation", "FewShotModel", "ValidationError", "classify", "evaluate",
           "load_model", "train", "__version__"]
