"""Scores of a set of predictions: one place for Train, Evaluate, the CLI and the pages.

Plain dicts of floats (JSON-safe: they are saved in a model's ``config.json``), computed with
scikit-learn's metrics; ``zero_division=0`` so a label never predicted scores 0, not a warning.
scikit-learn is imported when a score is computed (Train, Evaluate), not with the module: with the
pandas and pyarrow it pulls in it costs 165 MB and 1.5 s, which a classify request never needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SINGLE_LABEL_KEYS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
MULTI_LABEL_KEYS = ("micro_f1", "macro_f1", "exact_match", "hamming_loss")


def single_label_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, macro precision / recall / F1, a per-label table and the confusion matrix (rows: true)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support  # see the docstring

    labels = list(labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(mp), "macro_recall": float(mr), "macro_f1": float(mf),
        "per_label": per_label(labels, p, r, f, s),
        "confusion_matrix": {"labels": labels,
                             "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
    }


def multi_label_metrics(Y_true: np.ndarray, Y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Micro and macro F1, exact-match ratio, Hamming loss, per-label precision / recall / F1."""
    from sklearn.metrics import (  # see the docstring
        accuracy_score,
        f1_score,
        hamming_loss,
        precision_recall_fscore_support,
    )

    p, r, f, s = precision_recall_fscore_support(Y_true, Y_pred, zero_division=0)
    return {
        "n": int(len(Y_true)),
        "micro_f1": float(f1_score(Y_true, Y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(Y_true, Y_pred, average="macro", zero_division=0)),
        "exact_match": float(accuracy_score(Y_true, Y_pred)),
        "hamming_loss": float(hamming_loss(Y_true, Y_pred)),
        "per_label": per_label(labels, p, r, f, s),
    }


def per_label(labels: Sequence[str], precision: Sequence[float], recall: Sequence[float], f1: Sequence[float],
              support: Sequence[int]) -> dict[str, dict[str, Any]]:
    """``{label: {"precision", "recall", "f1", "support"}}`` in the order of ``labels``."""
    return {label: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                    "support": int(support[k])} for k, label in enumerate(labels)}


def headline_keys(metrics: Mapping[str, Any]) -> tuple[str, ...]:
    """The summary scores of a metrics dict: single-label ones when it has ``accuracy``, else multi-label."""
    return SINGLE_LABEL_KEYS if "accuracy" in metrics else MULTI_LABEL_KEYS


def scored_on(metrics: dict) -> str:
    """How a trained model's scores were measured, in words (the CLI and the pages say the same)."""
    v = metrics.get("validation", {})
    source = v.get("source")
    if source == "cross-validation":
        return (f"cross-validated on your {v.get('n')} examples ({v.get('folds')} folds; each fold's copy was tuned "
                "without the examples it is scored on, and the saved model learned from all of them)")
    if source == "file":
        return f"held out: {v.get('n')} examples of the validation file ({v.get('file')})"
    if source == "split":  # models trained before cross-validation held out a stratified split
        return f"held out: a stratified {v.get('fraction', 0):.0%} split of {v.get('n')} examples (seed {v.get('seed')})"
    return "not scored (cross-validation was switched off)"


RELIABILITY_BINS = 10


def confidence_bins(confidence: np.ndarray, bins: int = RELIABILITY_BINS) -> np.ndarray:
    """Each confidence's bin among ``bins`` equal-width bins over [0, 1] (right edges closed, 0 in the first):
    the one binning of reliability diagrams here and of the benchmarks' calibration error."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.digitize(np.asarray(confidence, dtype=float), edges[1:-1], right=True), 0, bins - 1)


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = RELIABILITY_BINS) -> list[dict]:
    """Confidence against accuracy in equal-width bins over [0, 1] (empty bins left out): a reliability diagram.

    Each bin: ``low`` / ``high`` edges, ``count``, mean ``confidence`` and ``accuracy`` (share correct).
    A calibrated model's points lie on the diagonal.
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = confidence_bins(confidence, bins)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "count": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()), "accuracy": float(correct[which == b].mean())}
            for b in range(bins) if (which == b).any()]
