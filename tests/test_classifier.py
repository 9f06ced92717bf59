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
