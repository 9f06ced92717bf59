"""The data behind the pages' pictures: pandas frames of an evaluation report's and a saved model's scores.

Pure functions, no Streamlit and no Altair: the pages draw these frames and show the same
numbers beside each picture, and the tests check the numbers without a browser. Kept out of
``evaluate.py`` and ``metrics.py`` so that importing the package (a classify request, the
server) never loads pandas.

>>> confusion_cells(confusion_frame(report))  # one row per (label, predicted): count and share of the label's row
>>> reliability_frame(report)    # confidence bins: mean confidence, accuracy, count
>>> per_label_f1_frame(metrics)  # a saved model's F1 per label, tuned and few-shot side by side
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from .evaluate import EvaluationReport

TRAINED, FEW_SHOT = "trained", "few-shot (no training)"
"""The two sides of a saved model's scores, named as the Models page's tables name them."""


def confusion_frame(report: EvaluationReport) -> pd.DataFrame:
    """The confusion matrix as a table. Rows: the examples' labels; columns: what the held-out model predicted."""
    labels = list(report.labels)
    return pd.DataFrame(report.confusion_matrix, index=pd.Index(labels, name="label"),
                        columns=pd.Index(labels, name="predicted"))


def confusion_cells(matrix: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of ``confusion_frame``'s table: ``label``, ``predicted``, ``count`` and ``share`` (of that
    label's examples), for a heatmap."""
    cells = matrix.stack().rename("count").reset_index()
    totals = cells.groupby("label", sort=False)["count"].transform("sum")
    cells["share"] = (cells["count"] / totals.where(totals > 0, 1)).astype(float)
    return cells


def reliability_frame(report: EvaluationReport) -> pd.DataFrame:
    """The report's reliability bins: ``confidence`` (mean), ``accuracy``, ``count``, ``bin`` ("60-70 %")."""
    frame = pd.DataFrame(list(report.reliability), columns=["low", "high", "count", "confidence", "accuracy"])
    frame["bin"] = [f"{low:.0%}-{high:.0%}" for low, high in zip(frame["low"], frame["high"])]
    return frame[["bin", "confidence", "accuracy", "count"]]


def per_label_f1_frame(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """A saved model's F1 per label, ``trained`` and, where the scores have it, the untuned few-shot baseline.

    Long form (``label``, ``model``, ``f1``, ``support``) for a grouped bar chart; labels in the
    trained scores' order; empty when the model was not scored.
    """
    rows = []
    for side, name in (("trained", TRAINED), ("baseline", FEW_SHOT)):
        for label, scores in ((metrics.get(side) or {}).get("per_label") or {}).items():
            rows.append({"label": label, "model": name, "f1": float(scores["f1"]), "support": int(scores["support"])})
    return pd.DataFrame(rows, columns=["label", "model", "f1", "support"])
