"""Every classification head: few-shot, multi-label, the ``Head`` protocol, out-of-fold logits, saved heads.

Training, evaluation and inference all take their heads from here, so Evaluate scores the very
model Train saves and ``classify`` runs. Heads are plain numpy at inference and are saved
without pickle: ``to_arrays()`` (safetensors) plus ``to_config()`` (JSON), read back by
``make_head``.

The few-shot classifier: logistic regression on sentence embeddings, with calibrated confidences.

Logistic regression's probabilities on normalised embeddings are either flat (small ``C``) or
overconfident (large ``C``), and which one depends on the data set. So the confidences are
calibrated by a method rather than a constant: one temperature, fitted to out-of-fold logits
of the examples themselves (stratified k-fold, k = min(5, smallest label count)) with a weak
prior pulling it towards 1, which needs no extra labelled data.

Chosen on ../shared/data (docs/CLASSIFIER_STUDY.md; 7 sets, N = 8 and 64 per label, 3 seeds):
against plain LR (C=1), accuracy 67.3 vs 66.6 and ECE 0.065 vs 0.306 at N = 8 (small model);
ECE 0.041 vs 0.229 at N = 64. Leave-one-out was rejected: on small balanced binary sets,
leaving one example out tilts the model against its class, the temperature runs to its bound
and every confidence becomes 0.5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from .validation import ClassificationType

MAX_FOLDS = 5
TEMPERATURE_BOUNDS = (np.exp(-8.0), np.exp(8.0))
TEMPERATURE_PRIOR_SD = 1.0
"""Standard deviation of the Gaussian prior on log T (centred on T = 1); matters only for tiny sets."""
ABSENT_CLASS_LOGIT = -1e4
"""The logit a fold gives a class none of its training rows has (so it is never predicted)."""


@runtime_checkable
class Head(Protocol):
    """What every fitted head offers: ``classes_``, per-label probabilities, and saving without pickle."""

    classes_: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def to_arrays(self) -> dict[str, np.ndarray]: ...

    def to_config(self) -> dict[str, Any]: ...


class FewShotClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression with a temperature fitted on out-of-fold predictions.

    Follows scikit-learn's estimator contract: ``fit`` returns ``self`` and sets ``classes_``,
    ``coef_``, ``intercept_`` and ``temperature_``; ``predict_proba`` rows sum to 1.

    Parameters
    ----------
    C : float, default=10.0
        Inverse regularisation strength of the logistic regression.
    calibration : {"temperature", "none"}, default="temperature"
        ``"none"`` returns the raw logistic-regression probabilities.
    max_iter : int, default=1000

    Examples
    --------
    >>> clf = FewShotClassifier().fit(X, ["neg", "neg", "pos", "pos"])
    >>> clf.predict_proba(X_new)  # shape (n_inputs, 2)
    """

    def __init__(self, C: float = 10.0, *, calibration: Literal["temperature", "none"] = "temperature",
                 max_iter: int = 1000) -> None:
        self.C = C
        self.calibration = calibration
        self.max_iter = max_iter

    def _new_lr(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=self.max_iter)

    def fit(self, X: np.ndarray, y: Any) -> FewShotClassifier:
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ValueError(f"C must be a positive number. But it was: {self.C!r}")
        if self.calibration not in ("temperature", "none"):
            raise ValueError(f"calibration must be 'temperature' or 'none'. But it was: {self.calibration!r}")
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be 2-D with one row per label: X {X.shape}, y {y.shape}")
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise ValueError(f"y contains only one class: {str(classes[0])!r}; give at least 2 labels")
        lr = self._new_lr().fit(X, y)
        self.classes_ = lr.classes_
        self.coef_, self.intercept_ = full_logit_weights(lr)
        self.temperature_ = 1.0
        if self.calibration == "temperature" and counts.min() >= 2:
            self.temperature_ = self._fit_temperature(X, y, counts.min())
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_temperature(self, X: np.ndarray, y: np.ndarray, min_count: int) -> float:
        folds = StratifiedKFold(n_splits=min(MAX_FOLDS, int(min_count)), shuffle=True, random_state=0)
        logits = out_of_fold_logits(X, y, self.classes_, folds.split(X, y), C=self.C, max_iter=self.max_iter)
        index = {label: i for i, label in enumerate(self.classes_)}
        targets = np.array([index[label] for label in y])

        def nll(log_t: float) -> float:
            fit = -log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(targets)), targets].mean()
            return fit + log_t**2 / (2 * TEMPERATURE_PRIOR_SD**2) / len(targets)

        lo, hi = np.log(TEMPERATURE_BOUNDS)
        return float(np.exp(minimize_scalar(nll, bounds=(lo, hi), method="bounded").x))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "coef_", msg="This FewShotClassifier is not fitted yet: call fit(X, y) first.")
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.decision_function(X) / self.temperature_, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    # Saved without pickle: arrays for safetensors, the rest JSON-safe.
    def to_arrays(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "coef_")
        return {"coef": self.coef_.astype(np.float32), "intercept": self.intercept_.astype(np.float32)}

    def to_config(self) -> dict[str, Any]:
        check_is_fitted(self, "coef_")
        return {"C": self.C, "calibration": self.calibration, "classes": [str(c) for c in self.classes_],
                "temperature": self.temperature_}

    @classmethod
    def from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> FewShotClassifier:
        clf = cls(C=float(config["C"]), calibration=config["calibration"])
        clf.classes_ = np.array(config["classes"], dtype=object)
        clf.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        clf.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        clf.temperature_ = float(config["temperature"])
        if clf.coef_.shape != (len(clf.classes_), clf.coef_.shape[1]) or clf.intercept_.shape != (len(clf.classes_),):
            raise ValueError(
                f"saved head does not match its labels: coef {clf.coef_.shape}, intercept {clf.intercept_.shape}, "
                f"{len(clf.classes_)} labels"
            )
        clf.n_features_in_ = clf.coef_.shape[1]
        return clf


def full_logit_weights(lr: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """One row of weights per class; binary LR's single row becomes ``[0, w]`` (same softmax)."""
    if lr.coef_.shape[0] == 1:
        return (np.vstack([np.zeros_like(lr.coef_[0]), lr.coef_[0]]),
                np.array([0.0, lr.intercept_[0]]))
    return lr.coef_.copy(), lr.intercept_.copy()


def out_of_fold_logits(X: np.ndarray, y: np.ndarray, classes: Sequence[Any], splits: Iterable[tuple[np.ndarray, np.ndarray]],
                       *, C: float = 10.0, max_iter: int = 1000, warm_start: bool = False) -> np.ndarray:
    """Each row's logits from ``FewShotClassifier``'s logistic regression fitted without it (uncalibrated).

    The one routine behind the temperature (``FewShotClassifier.fit``) and Evaluate's held-out
    predictions. Columns follow ``classes``; a class absent from a fold's training rows gets
    ``ABSENT_CLASS_LOGIT``. ``warm_start`` reuses the previous fold's solution while every class
    is present: folds that differ by a few rows (leave-one-out) converge in about half the
    iterations.
    """
    index = {label: i for i, label in enumerate(classes)}
    logits = np.zeros((len(y), len(classes)))
    warm = LogisticRegression(C=C, max_iter=max_iter, warm_start=True) if warm_start else None
    for train, test in splits:
        every_label = len(np.unique(y[train])) == len(classes)
        lr = warm if warm is not None and every_label else LogisticRegression(C=C, max_iter=max_iter)
        lr.fit(X[train], y[train])
        coef, intercept = full_logit_weights(lr)
        fold = np.full((len(test), len(classes)), ABSENT_CLASS_LOGIT)
        fold[:, [index[label] for label in lr.classes_]] = X[test] @ coef.T + intercept
        logits[test] = fold
    return logits


# ----------------------------------------------------------------------------------------------
# The multi-label head


class MultiLabelHead(BaseEstimator):
    """One-vs-rest logistic regression with a threshold per label, chosen on the training data.

    Each threshold maximises that label's F1 on out-of-fold probabilities of the training
    examples (in-sample probabilities after tuning are near 0 or 1 and would say nothing).
    ``fit(X, Y)`` takes an indicator matrix ``Y`` of shape ``(n_samples, n_labels)``.

    >>> head = MultiLabelHead(labels=["biology", "physics"]).fit(X, Y)
    >>> head.predict_proba(X_new)  # (n_inputs, 2), each column on its own
    """

    def __init__(self, labels: Sequence[str] | None = None, *, C: float = 10.0, max_iter: int = 1000) -> None:
        self.labels = labels
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, Y: np.ndarray) -> MultiLabelHead:
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=int)
        if Y.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"Y must be an indicator matrix with one row per row of X: X {X.shape}, Y {Y.shape}")
        labels = list(self.labels) if self.labels is not None else [str(i) for i in range(Y.shape[1])]
        if len(labels) != Y.shape[1]:
            raise ValueError(f"labels has {len(labels)} names for {Y.shape[1]} columns of Y")
        coefs, intercepts, thresholds = [], [], []
        for k, label in enumerate(labels):
            y = Y[:, k]
            pos = int(y.sum())
            if pos == 0 or pos == len(y):
                raise ValueError(f"label {label!r} is on {'no' if pos == 0 else 'every'} training example; "
                                 "it needs examples with and without it")
            lr = self._new_lr().fit(X, y)
            coefs.append(lr.coef_[0])
            intercepts.append(lr.intercept_[0])
            thresholds.append(self._threshold(X, y))
        self.classes_ = np.array(labels, dtype=object)
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.array(intercepts)
        self.thresholds_ = np.array(thresholds)
        self.n_features_in_ = X.shape[1]
        return self

    def _new_lr(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight="balanced")

    def _threshold(self, X: np.ndarray, y: np.ndarray) -> float:
        folds = min(MAX_FOLDS, int(y.sum()), int(len(y) - y.sum()))
        if folds < 2:
            return 0.5
        oof = np.zeros(len(y))
        for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(X, y):
            oof[test] = self._new_lr().fit(X[train], y[train]).predict_proba(X[test])[:, 1]
        candidates = np.unique(np.concatenate([[0.5], (np.sort(oof)[1:] + np.sort(oof)[:-1]) / 2]))
        best, best_key = 0.5, (-1.0, 0.0)
        for t in candidates:
            pred = oof >= t
            tp = int((pred & (y == 1)).sum())
            f1 = 2 * tp / max(1, int(pred.sum()) + int(y.sum()))
            key = (round(f1, 9), -abs(t - 0.5))
            if key > best_key:
                best, best_key = float(t), key
        return float(np.clip(best, 0.01, 0.99))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "coef_", msg="This MultiLabelHead is not fitted yet: call fit(X, Y) first.")
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Indicator matrix: 1 where a label's probability reaches its threshold."""
        return (self.predict_proba(X) >= self.thresholds_).astype(int)

    @property
    def thresholds(self) -> dict[str, float]:
        check_is_fitted(self, "thresholds_")
        return {str(label): float(t) for label, t in zip(self.classes_, self.thresholds_)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "coef_")
        return {"coef": self.coef_.astype(np.float32), "intercept": self.intercept_.astype(np.float32)}

    def to_config(self) -> dict[str, Any]:
        check_is_fitted(self, "coef_")
        return {"C": self.C, "classes": [str(c) for c in self.classes_], "thresholds": self.thresholds}

    @classmethod
    def from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> MultiLabelHead:
        labels = list(config["classes"])
        head = cls(labels=labels, C=float(config["C"]))
        head.classes_ = np.array(labels, dtype=object)
        head.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        head.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        head.thresholds_ = np.array([float(config["thresholds"][label]) for label in labels])
        if head.coef_.ndim != 2 or head.coef_.shape[0] != len(labels) or head.intercept_.shape != (len(labels),):
            raise ValueError(f"saved head does not match its labels: coef {head.coef_.shape}, "
                             f"intercept {head.intercept_.shape}, {len(labels)} labels")
        head.n_features_in_ = head.coef_.shape[1]
        return head


def indicator(examples: Sequence[Any], labels: Sequence[str]) -> np.ndarray:
    """The ``(n_examples, n_labels)`` 0/1 matrix of multi-label examples (anything with ``.labels``)."""
    index = {label: k for k, label in enumerate(labels)}
    Y = np.zeros((len(examples), len(labels)), dtype=int)
    for i, e in enumerate(examples):
        for label in e.labels:
            if label in index:
                Y[i, index[label]] = 1
    return Y


def multi_label_out_of_fold(X: np.ndarray, Y: np.ndarray, labels: Sequence[str],
                            splits: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Held-out probabilities and predictions of ``MultiLabelHead``, the head Train saves.

    Each fold fits the head (balanced weights, a threshold per label from its own inner folds)
    on the other rows. A label that is on none or all of a fold's training rows cannot be
    fitted there; the fold predicts it as its training rows say (never, or always).
    """
    proba = np.zeros(Y.shape, dtype=np.float64)
    predicted = np.zeros(Y.shape, dtype=int)
    for train, test in splits:
        counts = Y[train].sum(axis=0)
        fitted = [k for k in range(len(labels)) if 0 < counts[k] < len(train)]
        for k in range(len(labels)):
            if k not in fitted:
                proba[test, k] = 1.0 if counts[k] == len(train) else 0.0
                predicted[test, k] = int(counts[k] == len(train))
        if fitted:
            head = MultiLabelHead(labels=[labels[k] for k in fitted]).fit(X[train], Y[train][:, fitted])
            proba[np.ix_(test, fitted)] = head.predict_proba(X[test])
            predicted[np.ix_(test, fitted)] = head.predict(X[test])
    return proba, predicted


# ----------------------------------------------------------------------------------------------
# Saved heads


def make_head(config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> FewShotClassifier | MultiLabelHead:
    """The head of a saved model from its ``config.json`` and ``head.safetensors`` arrays (no code runs).

    ``config`` is the whole model config: ``type`` picks the head, ``head`` holds its settings,
    ``labels`` must match its classes. Raises ``ValueError`` naming what does not fit.
    """
    kind: ClassificationType = config["type"]
    if kind == "single-label":
        head = FewShotClassifier.from_saved(config["head"], dict(arrays))
        if [str(c) for c in head.classes_] != list(config["labels"]):
            raise ValueError(f"head classes {list(head.classes_)} differ from labels {config['labels']}")
        return head
    if kind == "multi-label":
        return MultiLabelHead.from_saved(config["head"], dict(arrays))
    raise ValueError(f"unknown model type {kind!r}: expected single-label or multi-label")
