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

This module imports neither scikit-learn nor SciPy (together with the pandas and pyarrow that
scikit-learn pulls in: 165 MB and 1.5 s at import): ``fit_logistic`` solves scikit-learn's
logistic-regression objective in numpy, ``stratified_folds`` deals scikit-learn's folds, and the
heads keep the estimator contract (``get_params``, ``clone``, ``cross_val_score``) through
``EstimatorContract``. A classify request, the server and a cold start never load them.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from .validation import ClassificationType

MAX_FOLDS = 5
TEMPERATURE_BOUNDS = (np.exp(-8.0), np.exp(8.0))
TEMPERATURE_PRIOR_SD = 1.0
"""Standard deviation of the Gaussian prior on log T (centred on T = 1); matters only for tiny sets."""
ABSENT_CLASS_LOGIT = -1e4
"""The logit a fold gives a class none of its training rows has (so it is never predicted)."""


# ----------------------------------------------------------------------------------------------
# Logistic regression in numpy: scikit-learn's objective, solved without scikit-learn
#
# The objective is LogisticRegression(C, lbfgs)'s: C * sum_i s_i * loss_i + ||W||^2 / 2, the
# intercept unpenalised; two classes take one weight row (a sigmoid), more take one row per class
# (a softmax). Few-shot sets have fewer examples than dimensions, so W lies in the span of the
# examples (W = A^T X) and Newton's method runs on the n x n Gram matrix: a dozen examples
# converge in a few steps of a 22-unknown linear system, and each out-of-fold fit starts from the
# full fit's coefficients. Larger problems run L-BFGS on W itself. Both stop tighter than
# scikit-learn's tol=1e-4, so they reach the same optimum (tests/test_classifier.py compares).

KERNEL_MAX_UNKNOWNS = 600
"""Newton on the Gram matrix while (examples + 1) x weight rows stays this small; L-BFGS past it."""
NEWTON_TOL = 1e-8
LBFGS_TOL = 1e-5
"""Stop when the largest gradient entry of the objective divided by C x (total sample weight) is below
these: scikit-learn stops at 1e-4 on the same scale; Newton gets 1e-8 for free, L-BFGS pays per digit."""
LBFGS_MEMORY = 10


@dataclass
class LogisticFit:
    """One fitted logistic regression: ``coef`` (rows x d), ``intercept`` (rows,), and, from the
    Gram-matrix solver, ``dual`` (n x rows, W = dual^T X) to warm-start a fit on a subset of the rows."""

    coef: np.ndarray
    intercept: np.ndarray
    dual: np.ndarray | None = None
    iterations: int = 0


def _loss_terms(Z: np.ndarray, targets: np.ndarray, weights: np.ndarray, rows: int,
                curvature: bool) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Weighted loss sum, its gradient wrt the logits ``Z`` (n x rows), and what the Hessian needs:
    the weighted sigmoid curvature (n,) for one row, the softmax probabilities (n x rows) for more."""
    n = len(targets)
    if rows == 1:  # binary: sigmoid of one logit, targets 0 / 1
        z = Z[:, 0]
        loss = float(weights @ (np.logaddexp(0.0, z) - targets * z))
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        R = (weights * (p - targets))[:, None]
        return loss, R, (weights * p * (1.0 - p) if curvature else None)
    top = Z.max(axis=1, keepdims=True)
    E = np.exp(Z - top)
    total = E.sum(axis=1, keepdims=True)
    P = E / total
    loss = float(weights @ (np.log(total[:, 0]) + top[:, 0] - Z[np.arange(n), targets]))
    R = P.copy()
    R[np.arange(n), targets] -= 1.0
    R *= weights[:, None]
    return loss, R, (P if curvature else None)


def _newton_on_gram(X: np.ndarray, targets: np.ndarray, weights: np.ndarray, rows: int, C: float,
                    max_iter: int, start: LogisticFit | None) -> LogisticFit:
    n = len(X)
    M = np.hstack([X @ X.T, np.ones((n, 1))])  # Z = M @ theta, theta = [A; b]
    Q = np.zeros((n + 1, n + 1))
    Q[:n, :n] = M[:, :n]
    theta = np.zeros((n + 1, rows))
    if start is not None:
        if start.dual is not None:
            theta[:n] = start.dual
        theta[n] = start.intercept
    scale = C * float(weights.sum())
    size = (n + 1) * rows
    penalty = Q if rows == 1 else np.kron(Q, np.eye(rows))
    diagonal = np.diag_indices(size)

    def objective(th: np.ndarray, curvature: bool = False):
        loss, R, D = _loss_terms(M @ th, targets, weights, rows, curvature)
        QT = Q @ th
        return C * loss + 0.5 * float(np.sum(th * QT)), C * (M.T @ R) + QT, D

    value, grad, D = objective(theta, True)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        if np.abs(grad).max() <= NEWTON_TOL * scale:
            break
        if rows == 1:
            H = C * (M.T * D) @ M + penalty
        else:  # sum_i s_i M_i M_i^T (x) (diag(p_i) - p_i p_i^T), as one product and a diagonal block per class
            U = (M[:, :, None] * (D * np.sqrt(weights)[:, None])[:, None, :]).reshape(n, size)
            H = -C * (U.T @ U) + penalty
            blocks = H.reshape(n + 1, rows, n + 1, rows)
            for k in range(rows):
                blocks[:, k, :, k] += C * (M.T * (weights * D[:, k])) @ M
        H[diagonal] += 1e-10 * (1.0 + H.diagonal().max())  # duplicates make the Gram singular
        step = -np.linalg.solve(H, grad.reshape(-1)).reshape(n + 1, rows)
        slope = float(np.sum(grad * step))
        t = 1.0
        while True:
            new_value, new_grad, new_D = objective(theta + t * step, True)
            if new_value <= value + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        theta = theta + t * step
        converged = value - new_value <= 1e-15 * max(1.0, abs(value))
        value, grad, D = new_value, new_grad, new_D
        if converged:
            break
    return LogisticFit(theta[:n].T @ X, theta[n].copy(), theta[:n].copy(), iterations)


def _lbfgs(X: np.ndarray, targets: np.ndarray, weights: np.ndarray, rows: int, C: float, max_iter: int,
           start: LogisticFit | None) -> LogisticFit:
    n, d = X.shape
    Xb = np.hstack([X, np.ones((n, 1))])
    penalised = np.ones((d + 1, 1))
    penalised[d] = 0.0
    theta = np.zeros((d + 1, rows))
    if start is not None:
        theta[:d] = start.coef.T
        theta[d] = start.intercept
    scale = C * float(weights.sum())

    def objective(th: np.ndarray) -> tuple[float, np.ndarray]:
        loss, R, _ = _loss_terms(Xb @ th, targets, weights, rows, False)
        pen = th * penalised
        return (C * loss + 0.5 * float(np.sum(pen * th))) / scale, (C * (Xb.T @ R) + pen) / scale

    value, grad = objective(theta)
    memory: list[tuple[np.ndarray, np.ndarray, float]] = []
    iterations = 0
    for iterations in range(1, max_iter + 1):
        if np.abs(grad).max() <= LBFGS_TOL:
            break
        q = grad.copy()
        alphas = []
        for s, yv, rho in reversed(memory):
            a = rho * float(np.sum(s * q))
            q -= a * yv
            alphas.append(a)
        if memory:
            s, yv, _ = memory[-1]
            q *= float(np.sum(s * yv)) / float(np.sum(yv * yv))
        for (s, yv, rho), a in zip(memory, reversed(alphas)):
            q += (a - rho * float(np.sum(yv * q))) * s
        step = -q
        slope = float(np.sum(grad * step))
        if slope >= 0:  # not a descent direction: restart from the gradient
            memory.clear()
            step, slope = -grad, -float(np.sum(grad * grad))
        t = 1.0
        while True:
            new_value, new_grad = objective(theta + t * step)
            if new_value <= value + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        s, yv = t * step, new_grad - grad
        sy = float(np.sum(s * yv))
        if sy > 1e-12:
            memory.append((s, yv, 1.0 / sy))
            if len(memory) > LBFGS_MEMORY:
                memory.pop(0)
        theta = theta + s
        converged = value - new_value <= 1e-14 * max(1.0, abs(value))
        value, grad = new_value, new_grad
        if converged:
            break
    return LogisticFit(theta[:d].T.copy(), theta[d].copy(), None, iterations)


def fit_logistic(X: np.ndarray, targets: np.ndarray, n_classes: int, *, C: float = 10.0,
                 sample_weight: np.ndarray | None = None, max_iter: int = 1000,
                 start: LogisticFit | None = None) -> LogisticFit:
    """scikit-learn's ``LogisticRegression(C=C).fit`` for ``targets`` in ``0 .. n_classes - 1``.

    Two classes give one weight row (class 1's logit; class 0's is 0), as scikit-learn's binary
    model; more give one row per class. ``start`` warm-starts from an earlier fit on the same or
    more rows (its ``dual`` sliced to these rows).
    """
    X = np.asarray(X, dtype=np.float64)
    targets = np.asarray(targets)
    weights = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    rows = 1 if n_classes == 2 else n_classes
    if start is not None and start.coef.shape != (rows, X.shape[1]):
        start = None
    if len(X) < X.shape[1] and (len(X) + 1) * rows <= KERNEL_MAX_UNKNOWNS:
        return _newton_on_gram(X, targets.astype(np.float64) if rows == 1 else targets, weights, rows, C,
                               max_iter, start)
    return _lbfgs(X, targets.astype(np.float64) if rows == 1 else targets, weights, rows, C, max_iter, start)


def stratified_folds(y: np.ndarray, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(X, y)``, the same folds.

    The same allocation as scikit-learn 1.x (each class dealt round-robin over the folds in
    sorted-label order, then shuffled per class with ``RandomState(seed)``), so calibration is
    unchanged by dropping the import.
    """
    y = np.asarray(y)
    rng = np.random.RandomState(seed)
    _, first, inverse = np.unique(y, return_index=True, return_inverse=True)
    _, class_perm = np.unique(first, return_inverse=True)
    encoded = class_perm[inverse]
    n_classes = len(first)
    order = np.sort(encoded)
    allocation = np.asarray([np.bincount(order[i::n_splits], minlength=n_classes) for i in range(n_splits)])
    test_folds = np.empty(len(y), dtype="i")
    for k in range(n_classes):
        folds_for_class = np.arange(n_splits).repeat(allocation[:, k])
        rng.shuffle(folds_for_class)
        test_folds[encoded == k] = folds_for_class
    every = np.arange(len(y))
    return [(every[test_folds != i], every[test_folds == i]) for i in range(n_splits)]


def kfold_splits(n: int, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``KFold(n_splits, shuffle=True, random_state=seed).split(X)`` for ``n`` rows, the same folds."""
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_splits, n // n_splits)
    sizes[: n % n_splits] += 1
    every, out, first = np.arange(n), [], 0
    for size in sizes:
        test = np.zeros(n, dtype=bool)
        test[order[first:first + size]] = True
        out.append((every[~test], every[test]))
        first += size
    return out


def leave_one_out(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``LeaveOneOut().split(X)`` for ``n`` rows."""
    every = np.arange(n)
    return [(np.delete(every, i), every[i:i + 1]) for i in range(n)]


def log_softmax(Z: np.ndarray, axis: int = 1) -> np.ndarray:
    top = Z.max(axis=axis, keepdims=True)
    shifted = Z - top
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(Z: np.ndarray, axis: int = 1) -> np.ndarray:
    return np.exp(log_softmax(Z, axis=axis))


def check_fitted(estimator: Any, attribute: str, msg: str | None = None) -> None:
    """scikit-learn's ``NotFittedError`` when ``attribute`` is missing (imported only to raise it)."""
    if not hasattr(estimator, attribute):
        from sklearn.exceptions import NotFittedError  # only on this error path: keeps sklearn off classify's path

        raise NotFittedError(msg or f"This {type(estimator).__name__} instance is not fitted yet: call fit first.")


class EstimatorContract:
    """scikit-learn's estimator contract for a classifier, without importing scikit-learn.

    ``get_params`` / ``set_params`` read the ``__init__`` signature (as ``BaseEstimator`` does), so
    ``clone``, ``GridSearchCV`` and ``cross_val_score`` work; ``score`` is accuracy.
    """

    _estimator_type = "classifier"

    @classmethod
    def _param_names(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters.values()
        return sorted(p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> EstimatorContract:
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                                 f"Valid parameters are: {valid!r}.")
            setattr(self, name, value)
        return self

    def score(self, X: np.ndarray, y: Any, sample_weight: np.ndarray | None = None) -> float:
        hits = (self.predict(X) == np.asarray(y)).astype(float)
        return float(np.average(hits, weights=sample_weight))

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, Tags, TargetTags  # asked only by scikit-learn's own tools

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


@runtime_checkable
class Head(Protocol):
    """What every fitted head offers: ``classes_``, per-label scores and probabilities, and saving without pickle.

    ``decision_function`` is the score before the softmax (single-label heads) or each label's
    log-odds before its sigmoid (multi-label heads): what ``explain.py`` weighs words by.
    """

    classes_: np.ndarray

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def to_arrays(self) -> dict[str, np.ndarray]: ...

    def to_config(self) -> dict[str, Any]: ...


def checked_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X`` as float64 rows and ``y`` with its sorted classes, each row's class index and the class counts.

    The heads' shared input check: 2-D ``X`` with one row per label, at least 2 classes.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be 2-D with one row per label: X {X.shape}, y {y.shape}")
    classes, targets, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"y contains only one class: {str(classes[0])!r}; give at least 2 labels")
    return X, y, classes, targets, counts


class FewShotClassifier(EstimatorContract):
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

    def fit(self, X: np.ndarray, y: Any) -> FewShotClassifier:
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ValueError(f"C must be a positive number. But it was: {self.C!r}")
        if self.calibration not in ("temperature", "none"):
            raise ValueError(f"calibration must be 'temperature' or 'none'. But it was: {self.calibration!r}")
        X, y, classes, targets, counts = checked_xy(X, y)
        full = fit_logistic(X, targets, len(classes), C=self.C, max_iter=self.max_iter)
        self.classes_ = classes
        self.coef_, self.intercept_ = full_rows(full)
        self.temperature_ = 1.0
        if self.calibration == "temperature" and counts.min() >= 2:
            folds = stratified_folds(y, min(MAX_FOLDS, int(counts.min())), seed=0)
            logits = out_of_fold_logits(X, y, classes, folds, C=self.C, max_iter=self.max_iter, start=full)
            self.temperature_ = fit_temperature(logits, targets)
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_fitted(self, "coef_", msg="This FewShotClassifier is not fitted yet: call fit(X, y) first.")
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.decision_function(X) / self.temperature_, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    # Saved without pickle: arrays for safetensors, the rest JSON-safe.
    def to_arrays(self) -> dict[str, np.ndarray]:
        check_fitted(self, "coef_")
        return {"coef": self.coef_.astype(np.float32), "intercept": self.intercept_.astype(np.float32)}

    def to_config(self) -> dict[str, Any]:
        check_fitted(self, "coef_")
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


def full_rows(fit: LogisticFit) -> tuple[np.ndarray, np.ndarray]:
    """One row of weights per class; the binary model's single row becomes ``[0, w]`` (same softmax)."""
    if fit.coef.shape[0] == 1:
        return np.vstack([np.zeros_like(fit.coef[0]), fit.coef[0]]), np.array([0.0, fit.intercept[0]])
    return fit.coef.copy(), fit.intercept.copy()


def fit_temperature(logits: np.ndarray, targets: np.ndarray, *, prior_sd: float = TEMPERATURE_PRIOR_SD) -> float:
    """The temperature minimising the out-of-fold NLL plus a Gaussian prior on log T (centred on T = 1).

    A grid of 65 points over the bounds, then grids of 65 points around the best one, each 32x
    narrower, down to 1e-6 in log T: the global minimum of the bounded 1-D problem, vectorised.
    """
    rows = np.arange(len(targets))
    lo, hi = np.log(TEMPERATURE_BOUNDS)

    def objective(log_t: np.ndarray) -> np.ndarray:
        scaled = logits[None, :, :] / np.exp(log_t)[:, None, None]
        fit = -log_softmax(scaled, axis=2)[:, rows, targets].mean(axis=1)
        return fit + log_t**2 / (2 * prior_sd**2) / len(targets)

    left, right = lo, hi
    while True:
        grid = np.linspace(left, right, 65)
        best = int(np.argmin(objective(grid)))
        if right - left < 1e-6:
            return float(np.exp(grid[best]))
        left, right = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]


def out_of_fold_logits(X: np.ndarray, y: np.ndarray, classes: Sequence[Any], splits: Iterable[tuple[np.ndarray, np.ndarray]],
                       *, C: float = 10.0, max_iter: int = 1000, warm_start: bool = False,
                       start: LogisticFit | None = None) -> np.ndarray:
    """Each row's logits from ``FewShotClassifier``'s logistic regression fitted without it (uncalibrated).

    The one routine behind the temperature (``FewShotClassifier.fit``) and Evaluate's held-out
    predictions. Columns follow ``classes``; a class absent from a fold's training rows gets
    ``ABSENT_CLASS_LOGIT``. Each fold with every class present starts from ``start`` (the fit on
    every row, its coefficients restricted to the fold's rows) or, with ``warm_start``, from the
    previous fold's solution (folds that differ by a few rows, leave-one-out); the optimum is the
    same, reached in a few Newton steps instead of a dozen.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    index = {label: i for i, label in enumerate(classes)}
    targets = np.array([index[label] for label in y])
    logits = np.zeros((len(y), len(classes)))
    source, dual = start, (start.dual if start is not None else None)
    for train, test in splits:
        present = np.unique(targets[train])
        if len(present) < 2:
            raise ValueError(f"a fold's training rows hold only one class: {classes[present[0]]!r}")
        init = None
        if len(present) == len(classes) and source is not None:
            init = LogisticFit(source.coef, source.intercept, dual[train] if dual is not None else None)
        fit = fit_logistic(X[train], np.searchsorted(present, targets[train]), len(present), C=C, max_iter=max_iter,
                           start=init)
        coef, intercept = full_rows(fit)
        fold = np.full((len(test), len(classes)), ABSENT_CLASS_LOGIT)
        fold[:, present] = X[test] @ coef.T + intercept
        logits[test] = fold
        if warm_start and len(present) == len(classes):
            source = fit
            dual = None
            if fit.dual is not None:
                dual = np.zeros((len(y), fit.dual.shape[1]))
                dual[train] = fit.dual
    return logits


# ----------------------------------------------------------------------------------------------
# The multi-label head


class MultiLabelHead(EstimatorContract):
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
            fit = self._fit_lr(X, y)
            coefs.append(fit.coef[0])
            intercepts.append(fit.intercept[0])
            thresholds.append(self._threshold(X, y))
        self.classes_ = np.array(labels, dtype=object)
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.array(intercepts)
        self.thresholds_ = np.array(thresholds)
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_lr(self, X: np.ndarray, y: np.ndarray) -> LogisticFit:
        """Binary logistic regression with scikit-learn's ``class_weight="balanced"`` weights."""
        counts = np.bincount(y, minlength=2)
        weights = (len(y) / (2.0 * counts))[y]
        return fit_logistic(X, y, 2, C=self.C, sample_weight=weights, max_iter=self.max_iter)

    def _threshold(self, X: np.ndarray, y: np.ndarray) -> float:
        folds = min(MAX_FOLDS, int(y.sum()), int(len(y) - y.sum()))
        if folds < 2:
            return 0.5
        oof = np.zeros(len(y))
        for train, test in stratified_folds(y, folds, seed=0):
            fit = self._fit_lr(X[train], y[train])
            oof[test] = 1.0 / (1.0 + np.exp(-(X[test] @ fit.coef[0] + fit.intercept[0])))
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
        check_fitted(self, "coef_", msg="This MultiLabelHead is not fitted yet: call fit(X, Y) first.")
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Indicator matrix: 1 where a label's probability reaches its threshold."""
        return (self.predict_proba(X) >= self.thresholds_).astype(int)

    @property
    def thresholds(self) -> dict[str, float]:
        check_fitted(self, "thresholds_")
        return {str(label): float(t) for label, t in zip(self.classes_, self.thresholds_)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        check_fitted(self, "coef_")
        return {"coef": self.coef_.astype(np.float32), "intercept": self.intercept_.astype(np.float32)}

    def to_config(self) -> dict[str, Any]:
        check_fitted(self, "coef_")
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
