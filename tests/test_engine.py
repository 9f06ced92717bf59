import numpy as np
import pytest

from playground import Classification, Example, ValidationError, classify
from playground.engine import fit_few_shot


def test_seed_example_is_negative_for_both_inputs(seed):
    results = classify(list(seed.inputs), seed.examples, model="small")
    assert [r.input for r in results] == list(seed.inputs)
    assert [r.prediction for r in results] == ["negative", "negative"]
    for r in results:
        assert r.confidence == r.labels["negative"] > 0.5


def test_seed_example_on_the_large_model(seed):
    """A known miss, measured rather than hidden: on frozen MPNet embeddings every head tried
    (18 in the classifier study, docs/CLASSIFIER_STUDY.md: logistic regression at any C, LDA, ridge, SVM, centroid, kernel) puts
    "This item broke after 3 weeks" on the positive side of these 10 examples; only tuning the
    body (a custom model) moves it. The page shows it as a near tie, never a confident error."""
    broken, broke_later = classify(list(seed.inputs), seed.examples, model="large")
    assert broken.prediction == "negative" and broken.confidence > 0.7
    assert 0.35 < broke_later.labels["negative"] < 0.65


def test_result_shape(seed):
    results = classify(list(seed.inputs), [ex.to_dict() for ex in seed.examples])
    assert len(results) == 2 and all(isinstance(r, Classification) for r in results)
    for r in results:
        assert set(r.labels) == {"positive", "negative"}
        assert sum(r.labels.values()) == pytest.approx(1.0)
        assert list(r.labels.values()) == sorted(r.labels.values(), reverse=True)
        assert r.prediction == next(iter(r.labels)) and r.predictions == (r.prediction,)
        assert r.classification_type == "single-label"


def test_one_string_gives_one_result(seed):
    result = classify("This item broke after 3 weeks", seed.examples)
    assert isinstance(result, Classification) and result.input == "This item broke after 3 weeks"


def test_results_keep_input_order_for_three_labels():
    examples = [("I love it", "happy"), ("Best day ever", "happy"), ("This is awful", "angry"),
                ("I am furious", "angry"), ("What time is it?", "question"), ("Where is the station?", "question")]
    inputs = ["Where do I park?", "So wonderful!", "I hate this so much", "How much does it cost?"]
    assert [r.prediction for r in classify(inputs, examples)] == ["question", "happy", "angry", "question"]


def test_reclassify_hits_the_embedding_cache(seed, small_encoder):
    from playground.engine import clear_fitted

    clear_fitted()  # else a fit cached earlier in the session answers without embedding (and caching) the examples
    classify(list(seed.inputs), seed.examples)
    misses = small_encoder.cache_misses
    edited = [*seed.examples[:-1], Example("The fabric ripped on day one", "negative")]
    classify(list(seed.inputs), edited)
    assert small_encoder.cache_misses == misses + 1  # only the edited example was embedded


def test_validation_reaches_the_caller(seed):
    with pytest.raises(ValidationError, match="Not enough examples for: neutral"):
        classify(["x"], [*seed.examples, ("meh", "neutral")])
    with pytest.raises(ValidationError, match="needs examples"):
        classify(["x"])
    with pytest.raises(ValidationError, match="at most 96 - received 97"):
        classify(["x"] * 97, seed.examples)


def test_truncation_modes(seed, small_encoder):
    long_text = "The package arrived crushed and wet. " + "filler words here " * 400
    assert small_encoder.token_count(long_text) > small_encoder.max_tokens
    with pytest.raises(ValidationError, match=r"inputs\[1\] is too long: \d+ tokens"):
        classify(["fine", long_text], seed.examples, truncate="NONE")
    end = classify(long_text, seed.examples, truncate="END")
    start = classify(long_text, seed.examples, truncate="START")
    assert end.labels != start.labels  # START keeps the filler at the end, END the complaint at the start
    kept = small_encoder.fit_to_length(long_text, "START")
    assert long_text.endswith(kept) and small_encoder.token_count(kept) <= small_encoder.max_tokens - 2


def test_fitted_model_is_reused(seed):
    assert fit_few_shot(seed.examples) is fit_few_shot(list(seed.examples))


def test_embeddings_are_normalised(small_encoder):
    vectors = small_encoder.embed(["one", "two"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
