"""Label names (and optional descriptions) as prior knowledge for the few-shot head.

A label's name is free evidence: "negative", "card payment not recognised" or "Sports" embed
close to the texts they name. ``LabelPriorClassifier`` adds a *zero-shot prior* to the logistic
regression: the cosine between an input and each label's template embedding, with a weight.
The weight is not a constant. It is fitted, with the temperature, on out-of-fold logits of the
user's own examples (FewShotClassifier's stratified k-fold), under a Gaussian prior that pulls
it towards 0. Names that do not predict the examples (shuffled names, "A"/"B", "label_1") get
weight about 0, and the head is the plain calibrated logistic regression again.

A second weight, fitted the same way, removes each name's *bias*: how close the name is to
texts of every label (a short or generic name such as "ham" attracts everything). It is the
name's mean cosine over the examples, averaged per label.

It shares ``FewShotClassifier``'s folds and out-of-fold routine (``classifier.py``). The caller embeds ``label_texts(...)`` with the
encoder of the examples and passes the vectors in:

>>> texts = label_texts(labels)                                  # len(TEMPLATES) texts per label
>>> names = label_embedding_map(labels, encoder.embed(texts))
>>> clf = LabelPriorClassifier(label_embeddings=names).fit(X, y)
>>> clf.prior_weight_, clf.evidence_["oof_accuracy"], clf.evidence_["oof_accuracy_head"]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .classifier import (
    MAX_FOLDS,
    TEMPERATURE_PRIOR_SD,
    checked_xy,
    fit_logistic,
    full_rows,
    out_of_fold_logits,
    stratified_folds,
)

TEMPLATES: tuple[str, ...] = ("{}", "This text is about {}.", "This is {}.")
"""Generic templates: no task wording (no "review", "news", "question"), so they fit any label set."""
LOG_SCALE_BOUND = 8.0
"""The LR logits' scale (1 / temperature) is kept in [e^-8, e^8], as in FewShotClassifier."""
SCALE_PRIOR_SD = TEMPERATURE_PRIOR_SD
"""Gaussian prior on log(scale) centred on 1: FewShotClassifier's temperature prior."""
MAX_PRIOR_WEIGHT = 20.0
"""Upper bound of the prior weights, in logits per standard deviation of the prior scores."""
WEIGHT_PRIOR_SD = 0.5
"""Standard deviation of the Gaussian prior (centred on 0) on the prior weights, per example:
the penalty is ``w**2 / (2 * sd**2 * n)``, so 10 examples need clear evidence to give the names
weight while hundreds need little (chosen on 7 sets, N = 8: 0.25 / 0.5 / 1 / none gave
similar accuracy; 0.5 had the best mean accuracy and ECE)."""

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z][a-z])")


def humanise(label: Any) -> str:
    """A label name as words: ``card_payment_not_recognised`` -> ``card payment not recognised``,
    ``Sci/Tech`` -> ``Sci / Tech``, ``TopUpFailed`` -> ``Top Up Failed``. Case is kept otherwise."""
    text = str(label).strip()
    text = _CAMEL.sub(" ", text)
    text = re.sub(r"[_\-.:]+", " ", text)
    text = re.sub(r"\s*/\s*", " / ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text or str(label)


def label_texts(labels: Sequence[Any], descriptions: Mapping[Any, str] | None = None,
                templates: Sequence[str] = TEMPLATES) -> list[str]:
    """The texts to embed for each label, label-major: ``len(templates)`` per label, plus the
    label's description (verbatim) when one is given. ``label_embedding_map`` splits them back."""
    if isinstance(labels, str) or not len(labels):
        raise ValueError(f"labels must be a non-empty sequence of label names. But it was: {labels!r}")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"every template must contain '{{}}'. But they were: {list(templates)!r}")
    descriptions = dict(descriptions or {})
    unknown = [d for d in descriptions if d not in set(labels)]
    if unknown:
        raise ValueError(f"descriptions given for labels that are not in labels: {unknown!r}")
    out: list[str] = []
    for label in labels:
        name = humanise(label)
        out.extend(t.format(name) for t in templates)
        if descriptions.get(label):
            out.append(str(descriptions[label]).strip())
    return out


def label_embedding_map(labels: Sequence[Any], embeddings: np.ndarray, descriptions: Mapping[Any, str] | None = None,
                        templates: Sequence[str] = TEMPLATES) -> dict[Any, np.ndarray]:
    """Split the embeddings of ``label_texts(labels, descriptions, templates)`` into ``{label: (m, d)}``."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    descriptions = dict(descriptions or {})
    sizes = [len(templates) + (1 if descriptions.get(label) else 0) for label in labels]
    if embeddings.ndim != 2 or len(embeddings) != sum(sizes):
        raise ValueError(f"embeddings must have one row per label text ({sum(sizes)}). But its shape was: "
                         f"{embeddings.shape}")
    out, start = {}, 0
    for label, size in zip(labels, sizes):
        out[label] = embeddings[start:start + size]
        start += size
    return out


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value, so messages read ``'c'`` rather than ``np.str_('c')``."""
    return value.item() if isinstance(value, np.generic) else value


def prototypes(label_embeddings: Mapping[Any, np.ndarray], classes: Sequence[Any], dim: int) -> np.ndarray:
    """One unit vector per class: the normalised mean of its label texts' (normalised) embeddings."""
    missing = [_plain(c) for c in classes if c not in label_embeddings]
    if missing:
        raise ValueError(f"label_embeddings has no vectors for labels {missing!r}")
    rows = []
    for c in classes:
        v = np.asarray(label_embeddings[c], dtype=np.float64)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != dim or not len(v):
            raise ValueError(f"label_embeddings[{_plain(c)!r}] must have {dim} columns like X. But its shape was: "
                             f"{np.shape(label_embeddings[c])}")
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        m = v.mean(axis=0)
        rows.append(m / max(np.linalg.norm(m), 1e-12))
    return np.vstack(rows)


def choose_weights(oof_logits: np.ndarray, prior_scores: np.ndarray | Sequence[np.ndarray] | None,
                   targets: np.ndarray, *, max_prior_weight: float = MAX_PRIOR_WEIGHT,
                   weight_prior_sd: float | None = WEIGHT_PRIOR_SD
                   ) -> tuple[float, np.ndarray | float, dict[str, float]]:
    """Fit ``scale`` (1 / temperature) and weights ``w_j >= 0`` of ``scale * logits + sum_j w_j * prior_j``
    to minimise the out-of-fold log-loss of the examples (plus the temperature's weak prior).

    ``prior_scores`` is one (n, k) array or a list of them (extra score sources). Returns
    ``(scale, weights, evidence)`` (``weights`` a float for one array); evidence holds the OOF
    accuracy and log-loss with and without the priors. With ``prior_scores=None`` this is
    FewShotClassifier's temperature."""
    single = isinstance(prior_scores, np.ndarray)
    sources = [] if prior_scores is None else [np.asarray(prior_scores, dtype=np.float64)] if single else \
        [np.asarray(s, dtype=np.float64) for s in prior_scores]
    n, m = len(targets), len(sources)
    rows = np.arange(n)
    Z = np.asarray(oof_logits, dtype=np.float64)
    for s in sources:
        if s.shape != Z.shape:
            raise ValueError(f"prior scores must have the logits' shape {Z.shape}. But it was: {s.shape}")

    def combine(log_a: float, w: np.ndarray) -> np.ndarray:
        L = np.exp(log_a) * Z
        for wj, sj in zip(w, sources):
            L = L + wj * sj
        return L

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_a, w = theta[0], theta[1:]
        logp = log_softmax(combine(log_a, w), axis=1)
        G = np.exp(logp)
        G[rows, targets] -= 1.0  # n * d(mean loss)/d(logits)
        value = -logp[rows, targets].mean() + log_a**2 / (2 * SCALE_PRIOR_SD**2) / n
        grad = [np.exp(log_a) * (G * Z).sum() / n + log_a / SCALE_PRIOR_SD**2 / n]
        grad += [(G * sj).sum() / n for sj in sources]
        if weight_prior_sd:
            value += float(w @ w) / (2 * weight_prior_sd**2) / n
            grad[1:] = [g + wj / weight_prior_sd**2 / n for g, wj in zip(grad[1:], w)]
        return value, np.array(grad)

    def nll(L: np.ndarray) -> float:
        return float(-log_softmax(L, axis=1)[rows, targets].mean())

    scale_bounds = (-LOG_SCALE_BOUND, LOG_SCALE_BOUND)
    base = minimize(objective, np.zeros(1 + m), jac=True, method="L-BFGS-B",
                    bounds=[scale_bounds] + [(0.0, 0.0)] * m)
    best = base
    if m and max_prior_weight > 0:
        # The log-loss is convex in (scale, weights); log(scale) is a monotone change of variable, so
        # one start from the plain temperature suffices (two starts gave identical results on 7 sets).
        res = minimize(objective, np.r_[base.x[0], np.zeros(m)], jac=True, method="L-BFGS-B",
                       bounds=[scale_bounds] + [(0.0, max_prior_weight)] * m)
        if res.fun < best.fun - 1e-9:
            best = res
    log_a, w = float(best.x[0]), np.asarray(best.x[1:], dtype=np.float64)
    acc = lambda L: float((np.argmax(L, axis=1) == targets).mean())  # noqa: E731
    L_head = combine(base.x[0], np.zeros(m))
    L_best = combine(log_a, w)
    evidence = {
        "oof_accuracy_head": acc(L_head), "oof_log_loss_head": nll(L_head),
        "oof_accuracy_prior_only": acc(sources[0]) if m else float("nan"),
        "oof_accuracy": acc(L_best), "oof_log_loss": nll(L_best),
    }
    return float(np.exp(log_a)), (float(w[0]) if single else w), evidence


class LabelPriorClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression plus a label-name prior, weighted on out-of-fold predictions.

    ``logits(x) = scale * LR(x) + prior_weight * s(x) - bias_weight * b``, where ``s(x)`` is the
    cosine of ``x`` to each label's prototype (mean template embedding), centred per row and
    divided by its spread over the examples, and ``b`` each name's bias (its mean cosine over the
    examples, averaged per label, centred, same spread). ``scale`` (1 / temperature),
    ``prior_weight >= 0`` and ``bias_weight >= 0`` minimise the out-of-fold log-loss of the
    examples plus weak Gaussian priors (log scale ~ N(0, 1), weights ~ N(0, ``weight_sd``)), so
    the weights are in logits per standard deviation of the scores. Without ``label_embeddings``,
    with ``prior="off"``, with a label of fewer than 2 examples, or when the names do not help
    out of fold (weights 0), this is ``FewShotClassifier`` (LR + temperature).

    Parameters
    ----------
    label_embeddings : mapping label -> array (m, d) or (d,), optional
        Embeddings of each label's texts (``label_texts`` + ``label_embedding_map``), same
        encoder as ``X``. A label of ``y`` missing from it is an error.
    C : float, default=10.0
        Inverse regularisation strength of the logistic regression.
    prior : {"auto", "off"}, default="auto"
        ``"off"`` ignores the names.
    weight_sd : float, default=WEIGHT_PRIOR_SD
        Standard deviation of the prior on the weights (smaller: the names need more evidence).
    max_iter : int, default=1000
    """

    def __init__(self, label_embeddings: Mapping[Any, np.ndarray] | None = None, *, C: float = 10.0,
                 prior: str = "auto", weight_sd: float = WEIGHT_PRIOR_SD, max_iter: int = 1000) -> None:
        self.label_embeddings = label_embeddings
        self.C = C
        self.prior = prior
        self.weight_sd = weight_sd
        self.max_iter = max_iter

    def _validate(self) -> None:
        for name in ("C", "weight_sd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a positive number. But it was: {value!r}")
        if self.prior not in ("auto", "off"):
            raise ValueError(f"prior must be 'auto' or 'off'. But it was: {self.prior!r}")
        if not (isinstance(self.max_iter, int) and self.max_iter > 0):
            raise ValueError(f"max_iter must be a positive integer. But it was: {self.max_iter!r}")

    def fit(self, X: np.ndarray, y: Any) -> LabelPriorClassifier:
        self._validate()
        X, y, classes, targets, counts = checked_xy(X, y)
        k, d = len(classes), X.shape[1]
        self.classes_ = classes
        self.n_features_in_ = d
        use_names = self.label_embeddings is not None and self.prior == "auto"
        P = prototypes(self.label_embeddings, classes, d) if use_names else None

        full = fit_logistic(X, targets, k, C=self.C, max_iter=self.max_iter)
        self.coef_, self.intercept_ = full_rows(full)

        self.prior_vectors_ = P
        self.prior_bias_ = np.zeros(k)
        self.prior_spread_ = 1.0
        sources = None
        if P is not None:
            raw = X @ P.T
            per_label = np.vstack([raw[targets == c].mean(axis=0) for c in range(k)])  # [true label, name]
            self.prior_bias_ = per_label.mean(axis=0) - per_label.mean()
            centred = raw - raw.mean(axis=1, keepdims=True)  # softmax ignores a row's shift
            self.prior_spread_ = float(max(centred.std(), 1e-6))
            sources = [centred / self.prior_spread_,
                       -np.broadcast_to(self.prior_bias_ / self.prior_spread_, centred.shape)]

        self.scale_, self.prior_weight_, self.bias_weight_ = 1.0, 0.0, 0.0
        self.evidence_: dict[str, float] = {}
        if counts.min() >= 2:
            # FewShotClassifier's folds and out-of-fold routine: the names are weighed on the same evidence
            folds = stratified_folds(targets, min(MAX_FOLDS, int(counts.min())), seed=0)
            oof = out_of_fold_logits(X, targets, np.arange(k), folds, C=self.C, max_iter=self.max_iter, start=full)
            self.scale_, weights, self.evidence_ = choose_weights(oof, sources, targets,
                                                                  weight_prior_sd=self.weight_sd)
            if sources is not None:
                self.prior_weight_, self.bias_weight_ = (float(w) for w in weights)
        return self

    @property
    def temperature_(self) -> float:
        return 1.0 / self.scale_

    def prior_scores(self, X: np.ndarray) -> np.ndarray:
        """The weighted name scores added to the LR logits (zeros without names)."""
        check_is_fitted(self, "coef_", msg="This LabelPriorClassifier is not fitted yet: call fit(X, y) first.")
        X = np.asarray(X, dtype=np.float64)
        if self.prior_vectors_ is None:
            return np.zeros((len(X), len(self.classes_)))
        raw = X @ self.prior_vectors_.T
        raw = raw - raw.mean(axis=1, keepdims=True)
        return (self.prior_weight_ * raw - self.bias_weight_ * self.prior_bias_) / self.prior_spread_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "coef_", msg="This LabelPriorClassifier is not fitted yet: call fit(X, y) first.")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be 2-D with {self.n_features_in_} columns. But its shape was: {X.shape}")
        logits = self.scale_ * (X @ self.coef_.T + self.intercept_)
        if self.prior_weight_ > 0 or self.bias_weight_ > 0:
            logits = logits + self.prior_scores(X)
        return logits

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.decision_function(X), axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]
