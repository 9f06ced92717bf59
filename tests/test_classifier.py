import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score

from playground.classifier import FewShotClassifier


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16))
    X = np.vstack([c + 0.6 * rng.normal(size=(12, 16)) for c in centers])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.repeat(["a", "b", "c"], 12)
    return X, y


def test_sklearn_contract(blobs):
    X, y = blobs
    clf = FewShotClassifier()
    assert clf.fit(X, y) is clf
    assert list(clf.classes_) == ["a", "b", "c"]
    proba = clf.predict_proba(X)
    assert proba.shape == (36, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (clf.predict(X) == y).mean() > 0.9
    assert clone(clf).get_params() == clf.get_params()
    assert cross_val_score(FewShotClassifier(), X, y, cv=3).mean() > 0.8


def test_not_fitted():
    with pytest.raises(NotFittedError, match="call fit"):
        FewShotClassifier().predict_proba(np.zeros((1, 4)))


def test_bad_parameters(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="C must be a positive number. But it was: -1"):
        FewShotClassifier(C=-1).fit(X, y)
    with pytest.raises(ValueError, match="only one class: 'a'"):
        FewShotClassifier().fit(X[:5], y[:5])


def test_temperature_is_fitted_and_changes_confidence_not_ranking(blobs):
    X, y = blobs
    calibrated = FewShotClassifier().fit(X, y)
    raw = FewShotClassifier(calibration="none").fit(X, y)
    assert raw.temperature_ == 1.0 and calibrated.temperature_ != 1.0
    np.testing.assert_array_equal(calibrated.predict(X), raw.predict(X))


def test_binary_is_two_columns(blobs):
    X, y = blobs
    mask = y != "c"
    proba = FewShotClassifier().fit(X[mask], y[mask]).predict_proba(X[mask])
    assert proba.shape == (24, 2)


def test_saved_state_round_trip(blobs):
    X, y = blobs
    clf = FewShotClassifier().fit(X, y)
    again = FewShotClassifier.from_saved(clf.to_config(), clf.to_arrays())
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-5)
    arrays = clf.to_arrays()
    arrays["intercept"] = arrays["intercept"][:2]
    with pytest.raises(ValueError, match="does not match its labels"):
        FewShotClassifier.from_saved(clf.to_config(), arrays)


# The numpy solver against scikit-learn's LogisticRegression (same objective, solved tightly)

@pytest.mark.parametrize("n_per, d, k", [(5, 384, 2), (3, 768, 4), (40, 16, 2), (30, 16, 5)],
                         ids=["few-shot-binary", "few-shot-multiclass", "primal-binary", "primal-multiclass"])
def test_fit_logistic_matches_scikit_learn(n_per, d, k):
    from sklearn.linear_model import LogisticRegression

    from playground.classifier import fit_logistic, full_rows

    rng = np.random.default_rng(k)
    X = np.vstack([c + 1.5 * rng.normal(size=(n_per, d)) for c in rng.normal(size=(k, d))])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), n_per)
    weights = rng.uniform(0.5, 2.0, size=len(y))
    def objective(coef, intercept, sample_weight):  # scikit-learn's: C * weighted log-loss + |W|^2 / 2
        Z = X @ coef.T + intercept
        Z = np.hstack([np.zeros((len(X), 1)), Z]) if coef.shape[0] == 1 else Z
        logp = Z - np.logaddexp.reduce(Z, axis=1, keepdims=True)
        s = np.ones(len(y)) if sample_weight is None else sample_weight
        return -10.0 * float(s @ logp[np.arange(len(y)), y]) + 0.5 * float((coef**2).sum())

    for sample_weight in (None, weights):
        tight = LogisticRegression(C=10.0, tol=1e-10, max_iter=10_000).fit(X, y, sample_weight=sample_weight)
        default = LogisticRegression(C=10.0, max_iter=1000).fit(X, y, sample_weight=sample_weight)
        ours = fit_logistic(X, y, k, C=10.0, sample_weight=sample_weight)
        best = objective(tight.coef_, tight.intercept_, sample_weight)
        ours_j = objective(ours.coef, ours.intercept, sample_weight)
        assert ours_j <= objective(default.coef_, default.intercept_, sample_weight) + 1e-9 * best  # at least as close
        assert ours_j - best <= 1e-6 * best
        ref_logits = X @ tight.coef_.T + tight.intercept_
        our_logits = X @ ours.coef.T + ours.intercept
        np.testing.assert_allclose(our_logits - our_logits.mean(axis=1, keepdims=True),
                                   ref_logits - ref_logits.mean(axis=1, keepdims=True), atol=5e-3)
        assert full_rows(ours)[0].shape == (k, d)


def test_folds_are_scikit_learns():
    from sklearn.model_selection import KFold, LeaveOneOut, StratifiedKFold

    from playground.classifier import kfold_splits, leave_one_out, stratified_folds

    y = np.array(list("aabbbcccccaab") * 3)
    for seed in (0, 3):
        theirs = StratifiedKFold(n_splits=4, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        for (a, b), (c, d) in zip(stratified_folds(y, 4, seed=seed), theirs, strict=True):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)
        theirs = KFold(n_splits=5, shuffle=True, random_state=seed).split(np.zeros(len(y)))
        for (a, b), (c, d) in zip(kfold_splits(len(y), 5, seed=seed), theirs, strict=True):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)
    for (a, b), (c, d) in zip(leave_one_out(7), LeaveOneOut().split(np.zeros(7)), strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_temperature_is_the_bounded_minimum(blobs):
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    from playground.classifier import TEMPERATURE_BOUNDS, fit_temperature

    rng = np.random.default_rng(1)
    for scale in (0.2, 3.0, 40.0):
        logits = scale * rng.normal(size=(30, 3))
        targets = rng.integers(0, 3, size=30)

        def nll(log_t, logits=logits, targets=targets):
            return (-log_softmax(logits / np.exp(log_t), axis=1)[np.arange(30), targets].mean()
                    + log_t**2 / 2 / 30)

        ref = minimize_scalar(nll, bounds=tuple(np.log(TEMPERATURE_BOUNDS)), method="bounded",
                              options={"xatol": 1e-8}).x
        assert nll(np.log(fit_temperature(logits, targets))) <= nll(ref) + 1e-9


def test_importing_the_head_leaves_scikit_learn_and_scipy_out():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from playground.classifier import FewShotClassifier; "
            "FewShotClassifier().fit(np.eye(6), list('aaabbb')).predict_proba(np.eye(6)); "
            "print(sorted(m for m in ('sklearn', 'scipy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
