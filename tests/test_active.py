"""Label next (issue #19): what to label, the review queue and the opt-in ``unknown`` answer.

Synthetic vectors and probabilities, plus one case on real sentences with the small model.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from scipy.special import softmax

from playground import active
from playground.active import (
    ThresholdChoice,
    apply_unknown,
    choose_unknown_threshold,
    review_order,
    suggest,
    uncertainty,
)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def two_label_pool(n: int = 400, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on both sides of a boundary along the first axis; probabilities from a logistic head."""
    rng = np.random.default_rng(seed)
    X = unit(rng.normal(size=(n, d)))
    logit = 12 * X[:, 0]
    proba = np.column_stack([1 / (1 + np.exp(logit)), 1 / (1 + np.exp(-logit))])
    return X, proba


# ---------------------------------------------------------------------------- uncertainty


def test_uncertainty_kinds_rank_a_coin_toss_highest():
    proba = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    margin = uncertainty(proba, "margin")
    assert margin == pytest.approx([1.0, 0.15, 1.0, 0.0])
    entropy = uncertainty(proba, "entropy")
    assert entropy[2] == pytest.approx(1.0) and entropy[3] == pytest.approx(0.0)
    assert entropy[0] > entropy[1]
    least = uncertainty(proba, "least-confidence")
    assert least[2] == pytest.approx(1.0) and least[3] == pytest.approx(0.0)
    for kind in active.KINDS:
        u = uncertainty(proba, kind)
        assert ((0 <= u) & (u <= 1)).all()


def test_review_order_puts_the_least_sure_first_and_keeps_input_order_on_ties():
    proba = np.array([[0.99, 0.01], [0.55, 0.45], [0.7, 0.3], [0.45, 0.55], [0.99, 0.01]])
    assert review_order(proba).tolist() == [1, 3, 2, 0, 4]


# ---------------------------------------------------------------------------- suggest


def test_uncertainty_picks_the_boundary():
    X, proba = two_label_pool()
    picks = suggest(X, proba, k=10, strategy="uncertainty")
    margin = uncertainty(proba)
    assert set(picks) == set(np.argsort(-margin)[:10])
    assert np.abs(X[picks, 0]).max() < np.quantile(np.abs(X[:, 0]), 0.1)
    assert (np.diff(margin[picks]) <= 0).all()  # least sure first


def test_diversity_avoids_near_duplicates():
    """Twenty paraphrases of one ambiguous text sit on the boundary: at most one of them is shown."""
    X, proba = two_label_pool(seed=1)
    rng = np.random.default_rng(2)
    anchor = unit(np.eye(1, X.shape[1], 1))  # on the boundary (first coordinate 0)
    dupes = unit(anchor + 0.01 * rng.normal(size=(20, X.shape[1])))
    dupes[:, 0] = 0.0
    dupes = unit(dupes)
    X = np.vstack([X, dupes])
    proba = np.vstack([proba, np.full((20, 2), 0.5)])
    dupe_rows = set(range(len(X) - 20, len(X)))

    only_uncertainty = suggest(X, proba, k=10, strategy="uncertainty")
    assert len(dupe_rows & set(only_uncertainty)) == 10  # the paraphrases crowd out everything else

    picks = suggest(X, proba, k=10)
    assert len(picks) == 10 == len(set(picks))
    assert len(dupe_rows & set(picks)) <= 1
    similarity = X[picks] @ X[picks].T
    assert similarity[~np.eye(10, dtype=bool)].max() < 0.95
    # still about uncertainty: the picks are much closer to the boundary than the pool is
    assert np.median(np.abs(X[picks, 0])) < np.median(np.abs(X[:, 0]))


def test_diversity_skips_near_duplicates_of_labelled_examples():
    X, proba = two_label_pool(seed=3)
    first = suggest(X, proba, k=5)
    again = suggest(X, proba, k=5, labelled_vectors=X[first])
    assert not set(first) & set(again)


def test_a_batch_is_filled_with_repeats_of_examples_only_when_too_few_distinct_rows_are_left():
    X, proba = two_label_pool(n=12, seed=4)
    labelled = X[:4]  # rows 0-3 repeat labelled examples; 8 distinct rows are left for a batch of 10
    picks = suggest(X, proba, k=10, labelled_vectors=labelled)
    assert len(picks) == 10 and set(picks[:8]) == set(range(4, 12)) and set(picks[8:]) <= {0, 1, 2, 3}
    assert set(suggest(X, proba, k=5, labelled_vectors=labelled)) <= set(range(4, 12))


def test_suggest_respects_exclude_and_small_pools():
    X, proba = two_label_pool(n=30)
    excluded = np.arange(25)
    for strategy in active.STRATEGIES:
        picks = suggest(X, proba, k=10, exclude=excluded, strategy=strategy)
        assert sorted(picks.tolist()) == [25, 26, 27, 28, 29]
        mask = np.zeros(30, dtype=bool)
        mask[:25] = True
        assert sorted(suggest(X, proba, k=10, exclude=mask, strategy=strategy).tolist()) == [25, 26, 27, 28, 29]
    assert suggest(X, proba, exclude=np.arange(30)).size == 0


def test_suggest_is_reproducible_and_random_differs_by_seed():
    X, proba = two_label_pool(n=300)
    assert suggest(X, proba, seed=4).tolist() == suggest(X, proba, seed=4).tolist()
    assert suggest(X, proba, strategy="random", seed=1).tolist() != suggest(X, proba, strategy="random", seed=2).tolist()


def test_suggest_samples_big_pools_and_stays_fast():
    """100,000 rows: the least sure rows are kept and a sample of the rest stands for them."""
    rng = np.random.default_rng(5)
    X = unit(rng.normal(size=(100_000, 64)).astype(np.float32))
    proba = softmax(8 * X[:, :4], axis=1)
    start = time.process_time()
    picks = suggest(X, proba, k=10, labelled_vectors=X[:50], exclude=np.arange(50))
    spent = time.process_time() - start
    assert len(set(picks)) == 10 and picks.min() >= 50
    assert np.median(uncertainty(proba[picks])) > np.quantile(uncertainty(proba), 0.75)
    assert spent < 5.0, f"suggest took {spent:.2f} s of CPU on 100,000 rows"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, "k must be a positive whole number. But it was: 0"),
    ({"k": 2.5}, "k must be a positive whole number. But it was: 2.5"),
    ({"strategy": "smart"}, "strategy must be one of 'uncertainty+diversity', 'uncertainty', 'random'. But it was: 'smart'"),
    ({"kind": "variance"}, "kind must be one of 'margin', 'entropy', 'least-confidence'. But it was: 'variance'"),
    ({"power": -1}, "power must be a number in [0, 64]. But it was: -1"),
    ({"exclude": np.array([0, 99])}, "exclude must be pool row indices in [0, 6)"),
    ({"labelled_vectors": np.zeros((2, 3))}, "labelled_vectors must have 4 columns like pool_vectors"),
    ({"duplicate_similarity": 0}, "duplicate_similarity must be a number in (0, 1]. But it was: 0.0"),
])
def test_suggest_names_the_bad_value(kwargs, message):
    X = unit(np.random.default_rng(0).normal(size=(6, 4)))
    proba = np.full((6, 2), 0.5)
    with pytest.raises(ValueError) as err:
        suggest(X, proba, **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize(("proba", "message"), [
    (np.array([0.5, 0.5]), "pool_proba must be 2-D (one row per text). But its shape was (2,)"),
    (np.array([[1.0]]), "pool_proba must have at least 2 columns"),
    (np.array([[0.5, 0.6]]), "pool_proba rows must sum to 1 (one probability per label). But row 0 summed to 1.1"),
    (np.array([[1.5, -0.5]]), "pool_proba must hold probabilities in [0, 1]. But row 0 was"),
    (np.array([[np.nan, 0.5]]), "pool_proba must be finite. But row 0 was"),
])
def test_probabilities_are_checked(proba, message):
    with pytest.raises(ValueError) as err:
        suggest(np.zeros((len(np.atleast_2d(proba)), 3)), proba)
    assert message in str(err.value)


def test_rows_must_match():
    with pytest.raises(ValueError, match="one row per pool text. But they had 3 and 2 rows"):
        suggest(np.zeros((3, 4)), np.full((2, 2), 0.5))


# ---------------------------------------------------------------------------- unknown


def oof_like(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Calibrated three-label predictions: each row is right with the probability it states."""
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    proba = softmax(rng.normal(scale=2.0, size=(n, 3)), axis=1)
    truth = np.array([rng.choice(3, p=p) for p in proba])
    return proba, np.array(classes)[truth], classes


def test_threshold_meets_the_target_precision_on_out_of_fold_data():
    proba, y, classes = oof_like()
    choice = choose_unknown_threshold(proba, y, classes, target_precision=0.9)
    assert choice.met
    answered = proba.max(axis=1) >= choice.threshold
    predicted = np.array(classes)[proba.argmax(axis=1)]
    assert (predicted[answered] == y[answered]).mean() == pytest.approx(choice.precision)
    assert choice.precision >= 0.9
    assert answered.mean() == pytest.approx(choice.coverage)
    assert 0 < choice.coverage < 1
    assert choice.accuracy_without < 0.9
    # the lowest such threshold: one step lower would miss the target
    lower = [p for t, p, c in choice.curve if t < choice.threshold]
    assert lower and max(lower[-1:]) < 0.9
    assert "90%" in choice.summary and f"{choice.coverage:.0%}" in choice.summary

    # on fresh data from the same source, the promise roughly holds
    fresh, y2, _ = oof_like(seed=1)
    labels = apply_unknown(fresh, classes, choice)
    answered2 = labels != "unknown"
    assert (labels[answered2] == y2[answered2]).mean() > 0.87
    assert abs(answered2.mean() - choice.coverage) < 0.05


def test_threshold_reports_when_the_target_cannot_be_met():
    proba = np.array([[0.6, 0.4], [0.55, 0.45], [0.7, 0.3], [0.8, 0.2]])
    y = ["b", "b", "a", "b"]
    choice = choose_unknown_threshold(proba, y, ["a", "b"], target_precision=0.95)
    assert not choice.met
    assert choice.precision == pytest.approx(0.5)
    assert "does not reach" in choice.summary


def test_threshold_of_a_perfect_head_keeps_everything():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    choice = choose_unknown_threshold(proba, ["a", "b", "a"], ["a", "b"], target_precision=0.9)
    assert choice.met and choice.threshold == 0.0 and choice.coverage == 1.0


def test_apply_unknown():
    proba = np.array([[0.9, 0.1], [0.55, 0.45], [0.3, 0.7]])
    assert apply_unknown(proba, ["x", "y"], 0.6).tolist() == ["x", "unknown", "y"]
    assert apply_unknown(proba, ["x", "y"], 0.0).tolist() == ["x", "x", "y"]
    with pytest.raises(ValueError, match="unknown must differ from every label. But 'x' is one of the classes"):
        apply_unknown(proba, ["x", "y"], 0.5, unknown="x")
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]. But it was: 1.5"):
        apply_unknown(proba, ["x", "y"], 1.5)


def test_threshold_choice_is_frozen_and_validated():
    proba, y, classes = oof_like(n=200)
    choice = choose_unknown_threshold(proba, y, classes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        choice.threshold = 0.1  # type: ignore[misc]
    with pytest.raises(ValueError, match="coverage must be n_answered / n_examples"):
        dataclasses.replace(choice, coverage=0.123456)
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]. But it was: 2.0"):
        dataclasses.replace(choice, threshold=2.0)
    with pytest.raises(ValueError, match="counts must satisfy"):
        ThresholdChoice(0.5, 0.9, 0.9, 0.5, True, 10, 5, 6, 0.8, ())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target_precision": 0}, "target_precision must be a number in (0, 1]. But it was: 0.0"),
    ({"target_precision": "high"}, "target_precision must be a number in (0, 1]. But it was: 'high'"),
    ({"classes": ["a"]}, "classes must name the 2 columns of oof_proba. But it had 1"),
    ({"y_true": ["a"]}, "y_true must have one label per row of oof_proba (2)"),
    ({"y_true": ["a", "z"]}, "y_true has labels that are not in classes: ['z']"),
])
def test_threshold_names_the_bad_value(kwargs, message):
    args = {"oof_proba": np.array([[0.6, 0.4], [0.3, 0.7]]), "y_true": ["a", "b"], "classes": ["a", "b"]}
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        choose_unknown_threshold(**args)
    assert message in str(err.value)


# ---------------------------------------------------------------------------- real sentences


def test_real_paraphrases_are_not_suggested_together():
    """Five rewordings of one ambiguous review and five distinct ones, all equally unsure."""
    paraphrases = [
        "The delivery was late but the product itself is fine.",
        "Delivery came late, though the product is fine.",
        "The product is fine, but delivery was late.",
        "Late delivery, but the product itself is fine.",
        "The product's fine; the delivery was late though.",
    ]
    distinct = [
        "How do I reset my password?",
        "The screen cracked after a week.",
        "Do you ship to Canada?",
        "Great value for the price, would buy again.",
        "Can I change the colour of my order?",
    ]
    from playground.embeddings import get_encoder  # the model loads once per process, shared with other tests

    X = get_encoder("small").embed(paraphrases + distinct)
    proba = np.full((10, 2), 0.5)
    picks = suggest(X, proba, k=5)
    assert len(set(picks) & set(range(5))) == 1
