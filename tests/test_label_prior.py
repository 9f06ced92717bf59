import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from playground.label_prior import (
    TEMPLATES,
    LabelPriorClassifier,
    choose_weights,
    humanise,
    label_embedding_map,
    label_texts,
)


def unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


@pytest.fixture
def blobs():
    """3 labels, 4 examples each, noisy; the centres stand in for embeddings of good label names."""
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(3, 32)))
    def draw(n):
        X = np.vstack([c + 0.35 * rng.normal(size=(n, 32)) for c in centres])
        return unit(X), np.repeat(["a", "b", "c"], n)
    X, y = draw(4)
    X_test, y_test = draw(200)
    return X, y, X_test, y_test, centres


def names_from(vectors):
    return {label: v for label, v in zip(["a", "b", "c"], vectors)}


def test_humanise_and_label_texts():
    assert humanise("card_payment_not_recognised") == "card payment not recognised"
    assert humanise("Sci/Tech") == "Sci / Tech"
    assert humanise("TopUpFailed") == "Top Up Failed"
    assert humanise("  positive ") == "positive"
    texts = label_texts(["Refund_not_showing_up", "joy"], descriptions={"joy": "I feel happy"})
    assert len(texts) == 2 * len(TEMPLATES) + 1
    assert texts[0] == "Refund not showing up"
    assert "This text is about Refund not showing up." in texts
    assert texts[-1] == "I feel happy"
    E = label_embedding_map(["Refund_not_showing_up", "joy"], np.ones((len(texts), 4)),
                            descriptions={"joy": "I feel happy"})
    assert E["Refund_not_showing_up"].shape == (len(TEMPLATES), 4) and E["joy"].shape == (len(TEMPLATES) + 1, 4)


def test_label_text_errors_name_the_value():
    with pytest.raises(ValueError, match=r"descriptions given for labels that are not in labels: \['nope'\]"):
        label_texts(["a", "b"], descriptions={"nope": "x"})
    with pytest.raises(ValueError, match="every template must contain"):
        label_texts(["a"], templates=["no slot"])
    with pytest.raises(ValueError, match="non-empty sequence of label names. But it was: 'ab'"):
        label_texts("ab")
    with pytest.raises(ValueError, match=r"one row per label text \(6\). But its shape was: \(5, 4\)"):
        label_embedding_map(["a", "b"], np.ones((5, 4)))


def test_sklearn_contract(blobs):
    X, y, X_test, _, centres = blobs
    clf = LabelPriorClassifier(names_from(centres))
    assert clf.fit(X, y) is clf
    assert list(clf.classes_) == ["a", "b", "c"]
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(X_test)) <= {"a", "b", "c"}
    assert clone(clf).get_params().keys() == clf.get_params().keys()
    assert set(clf.evidence_) >= {"oof_accuracy", "oof_accuracy_head", "oof_log_loss", "oof_log_loss_head"}


def test_good_names_get_weight_and_help(blobs):
    X, y, X_test, y_test, centres = blobs
    plain = LabelPriorClassifier(prior="off").fit(X, y)
    named = LabelPriorClassifier(names_from(centres)).fit(X, y)
    assert named.prior_weight_ > 0.3
    assert named.evidence_["oof_log_loss"] < named.evidence_["oof_log_loss_head"]
    assert (named.predict(X_test) == y_test).mean() > (plain.predict(X_test) == y_test).mean()


@pytest.mark.parametrize("kind", ["misleading", "identical"])
def test_meaningless_names_cost_nothing(blobs, kind):
    X, y, X_test, _, centres = blobs
    vectors = np.roll(centres, 1, axis=0) if kind == "misleading" else np.repeat(centres[:1], 3, axis=0)
    plain = LabelPriorClassifier(prior="off").fit(X, y)
    named = LabelPriorClassifier(names_from(vectors)).fit(X, y)
    assert named.prior_weight_ < 1e-3
    assert (named.predict(X_test) == plain.predict(X_test)).mean() >= 0.99
    if kind == "identical":
        np.testing.assert_allclose(named.predict_proba(X_test), plain.predict_proba(X_test), atol=1e-6)


def test_without_names_it_is_the_few_shot_classifier(blobs):
    from playground.classifier import FewShotClassifier

    X, y, X_test, _, _ = blobs
    ours = LabelPriorClassifier().fit(X, y)
    theirs = FewShotClassifier().fit(X, y)
    assert ours.prior_weight_ == 0.0
    np.testing.assert_allclose(ours.temperature_, theirs.temperature_, rtol=1e-3)
    np.testing.assert_allclose(ours.predict_proba(X_test), theirs.predict_proba(X_test), atol=1e-3)


def test_one_example_of_a_label_skips_the_out_of_fold_weights(blobs):
    X, y, X_test, _, centres = blobs
    X1, y1 = np.vstack([X[:4], X[4:5]]), np.concatenate([y[:4], y[4:5]])
    clf = LabelPriorClassifier(names_from(centres[:2])).fit(X1, y1)
    assert (clf.prior_weight_, clf.temperature_, clf.evidence_) == (0.0, 1.0, {})
    np.testing.assert_allclose(clf.predict_proba(X_test).sum(axis=1), 1.0)


def test_choose_weights_shapes_and_zero_prior():
    rng = np.random.default_rng(1)
    targets = np.repeat([0, 1, 2], 10)
    logits = 2.0 * np.eye(3)[targets] + rng.normal(size=(30, 3))
    scale, weight, evidence = choose_weights(logits, np.zeros((30, 3)), targets)
    assert weight == 0.0 and scale > 0
    scale2, weights, _ = choose_weights(logits, [np.eye(3)[targets], np.zeros((30, 3))], targets)
    assert weights.shape == (2,) and weights[0] > 0 and weights[1] == 0.0
    with pytest.raises(ValueError, match=r"the logits' shape \(30, 3\). But it was: \(30, 2\)"):
        choose_weights(logits, np.zeros((30, 2)), targets)


@pytest.mark.parametrize(("params", "message"), [
    ({"C": -1}, "C must be a positive number. But it was: -1"),
    ({"prior": "maybe"}, "prior must be 'auto' or 'off'. But it was: 'maybe'"),
    ({"weight_sd": 0}, "weight_sd must be a positive number. But it was: 0"),
    ({"max_iter": 0}, "max_iter must be a positive integer. But it was: 0"),
])
def test_bad_parameters_name_the_value(blobs, params, message):
    X, y, *_ = blobs
    with pytest.raises(ValueError, match=message):
        LabelPriorClassifier(**params).fit(X, y)


def test_bad_label_embeddings_and_inputs(blobs):
    X, y, _, _, centres = blobs
    with pytest.raises(ValueError, match=r"label_embeddings has no vectors for labels \['c'\]"):
        LabelPriorClassifier({"a": centres[0], "b": centres[1]}).fit(X, y)
    message = r"label_embeddings\['a'\] must have 32 columns like X. But its shape was: \(5,\)"
    with pytest.raises(ValueError, match=message):
        LabelPriorClassifier({"a": np.ones(5), "b": centres[1], "c": centres[2]}).fit(X, y)
    with pytest.raises(ValueError, match="only one class: 'a'"):
        LabelPriorClassifier().fit(X[:4], y[:4])
    with pytest.raises(NotFittedError, match="call fit"):
        LabelPriorClassifier().predict_proba(X)
    clf = LabelPriorClassifier(names_from(centres)).fit(X, y)
    with pytest.raises(ValueError, match=r"32 columns. But its shape was: \(2, 3\)"):
        clf.predict_proba(np.ones((2, 3)))


EMOTION_EXAMPLES = [
    ("I can't stop smiling today, everything went right", "joy"),
    ("What a wonderful surprise party, I loved it", "joy"),
    ("I am furious that they cancelled my order again", "anger"), ("Stop lying to me, this makes me so mad", "anger"),
    ("I miss her so much since she passed away", "sadness"), ("I cried all night after the bad news", "sadness"),
    ("I'm terrified of walking home alone in the dark", "fear"),
    ("My hands shake before every exam, I'm scared", "fear"),
]
EMOTION_INPUTS = [
    ("Best day of my life, I'm so happy", "joy"), ("We finally got the house, I'm thrilled", "joy"),
    ("This is outrageous, I want to scream at them", "anger"), ("I'm so annoyed at my neighbour's noise", "anger"),
    ("I feel lonely and empty", "sadness"), ("Nothing matters anymore, I'm heartbroken", "sadness"),
    ("I'm afraid the surgery will go wrong", "fear"), ("There's a strange noise downstairs and I'm frightened", "fear"),
]


def test_real_label_names_help_two_examples_per_label(small_encoder):
    X = small_encoder.embed([t for t, _ in EMOTION_EXAMPLES])
    y = np.array([label for _, label in EMOTION_EXAMPLES])
    X_new = small_encoder.embed([t for t, _ in EMOTION_INPUTS])
    y_new = np.array([label for _, label in EMOTION_INPUTS])
    labels = sorted(set(y))
    names = label_embedding_map(labels, small_encoder.embed(label_texts(labels)))
    plain = LabelPriorClassifier(prior="off").fit(X, y)
    named = LabelPriorClassifier(names).fit(X, y)
    assert named.prior_weight_ > 0.2
    rows = np.arange(len(y_new))
    def mean_log_p(clf):
        return np.log(clf.predict_proba(X_new)[rows, np.searchsorted(clf.classes_, y_new)]).mean()
    assert mean_log_p(named) > mean_log_p(plain) + 0.1
    assert (named.predict(X_new) == y_new).mean() >= (plain.predict(X_new) == y_new).mean()
    shuffled = {label: names[labels[(i + 1) % len(labels)]] for i, label in enumerate(labels)}
    assert LabelPriorClassifier(shuffled).fit(X, y).prior_weight_ < 0.05
