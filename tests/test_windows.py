"""Long texts read in windows (issue #27): the cuts, the cap, bad input, and the label past the window."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.long_documents import LONG_EXAMPLES, LONG_TICKETS, OPENING
from playground.engine import classify, length_notes
from playground.validation import ValidationError, check_truncate
from playground.windows import (
    DEFAULT_MAX_WINDOWS,
    MAX_WINDOWS_ENV,
    combine_windows,
    has_words,
    max_windows_setting,
    window_spans,
)


def word_offsets(text: str) -> list[tuple[int, int]]:
    """One 'token' per word or punctuation mark: enough to test the cuts without a tokenizer."""
    import re

    return [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]


def test_windows_end_at_sentences_and_overlap():
    text = " ".join(f"Sentence {i} has five words." for i in range(40))  # 6 tokens a sentence
    offsets = word_offsets(text)
    spans = window_spans(text, offsets, limit=20, overlap=6, max_windows=100)
    assert not spans.capped
    assert spans.windows[0][0] == 0 and spans.windows[-1][1] == len(text)  # all of it is read
    for (a, b), (c, d) in zip(spans.windows, spans.windows[1:]):
        assert text[b - 1] == "."  # every window but the last ends at a sentence end
        assert c < b  # neighbours overlap
        assert text[c:].startswith("Sentence")  # and the next starts at a sentence start
    assert all(t <= 20 for t in spans.tokens)


def test_windows_without_sentences_cut_between_words():
    text = "word " * 100
    spans = window_spans(text, word_offsets(text), limit=16, overlap=4, max_windows=100)
    assert all(text[a:b].split() == ["word"] * len(text[a:b].split()) for a, b in spans.windows)
    assert spans.windows[-1][1] == len(text.rstrip())


def test_cap_stops_the_windows_and_says_so():
    text = "word " * 1000
    spans = window_spans(text, word_offsets(text), limit=50, overlap=8, max_windows=3)
    assert len(spans.windows) == 3 and spans.capped


def test_windows_of_only_punctuation_are_dropped():
    text = "Real words come first here. " + "!!! ... --- ??? " * 50
    spans = window_spans(text, word_offsets(text), limit=20, overlap=4, max_windows=100)
    assert len(spans.windows) == 1 and has_words(text[slice(*spans.windows[0])])
    nothing = "!!! ... --- " * 50
    assert window_spans(nothing, word_offsets(nothing), limit=20, max_windows=100).windows == ()


def test_combine_windows_is_a_weighted_normalised_mean():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    combined = combine_windows(vectors, [3, 1])
    assert combined.dtype == np.float32
    assert np.isclose(np.linalg.norm(combined), 1.0) and combined[0] == pytest.approx(3 * combined[1])


def test_max_windows_setting(monkeypatch):
    monkeypatch.delenv(MAX_WINDOWS_ENV, raising=False)
    assert max_windows_setting() == DEFAULT_MAX_WINDOWS
    monkeypatch.setenv(MAX_WINDOWS_ENV, "4")
    assert max_windows_setting() == 4 and max_windows_setting(2) == 2
    monkeypatch.setenv(MAX_WINDOWS_ENV, "lots")
    with pytest.raises(ValueError, match=f"{MAX_WINDOWS_ENV} must be a whole number .* 'lots'"):
        max_windows_setting()
    with pytest.raises(ValueError, match="max_windows must be a whole number .* 0"):
        max_windows_setting(0)


def test_truncate_accepts_windows_and_lists_the_values():
    assert check_truncate("windows") == "WINDOWS"
    with pytest.raises(ValidationError, match="NONE, START, END, WINDOWS"):
        check_truncate("SPLIT")


def test_label_past_the_window_needs_windows(small_encoder):
    texts, truth = list(LONG_TICKETS), list(LONG_TICKETS.values())
    assert all(small_encoder.token_count(t) > small_encoder.max_tokens for t in texts)
    cut = [r.prediction for r in classify(texts, LONG_EXAMPLES, truncate="END")]
    windowed = [r.prediction for r in classify(texts, LONG_EXAMPLES, truncate="WINDOWS")]
    assert windowed == truth
    assert cut[0] == cut[1] and cut != truth  # the same opening read twice: one of them is wrong


def test_short_texts_are_unchanged(small_encoder):
    short = ["my card was charged twice", "where is my parcel?"]
    small_encoder.clear_cache()
    cut = small_encoder.embed(short, truncate="END")
    small_encoder.clear_cache()
    assert np.array_equal(small_encoder.embed(short, truncate="WINDOWS"), cut)  # bit for bit


def test_windows_of_many_texts_in_one_call_match_one_by_one(small_encoder):
    texts = [*LONG_TICKETS, "a short one", OPENING]
    small_encoder.clear_cache()
    together = small_encoder.embed(texts, truncate="WINDOWS")
    small_encoder.clear_cache()
    alone = np.stack([small_encoder.embed([t], truncate="WINDOWS")[0] for t in texts])
    cosine = (together * alone).sum(axis=1)
    assert cosine.min() > 0.9999  # batch padding moves only the last bits (bf16 weights: a few 1e-4)


def test_huge_cell_is_read_up_to_the_cap(small_encoder):
    huge = ("The parcel is late again. " * 40 + "\n") * 5000  # about 5 MB
    assert len(huge) > 5_000_000
    reading = small_encoder.reading(huge, "WINDOWS", max_windows=4)
    assert reading.capped and not reading.counted_all and len(reading.windows) == 4
    assert "read in 4 windows (the cap)" in reading.describe(len(huge)) and MAX_WINDOWS_ENV in reading.describe(len(huge))
    vector = small_encoder.embed([huge], truncate="WINDOWS", max_windows=4)
    assert vector.shape == (1, small_encoder.dimension) and np.isfinite(vector).all()


def test_long_text_of_punctuation_after_words_and_none_at_all(small_encoder):
    tail = "Real words come first. " + "!!! ... --- ??? " * 400
    nothing = "!!! ... --- ??? " * 400
    for text in (tail, nothing):
        reading = small_encoder.reading(text, "WINDOWS")
        assert reading.longer and len(reading.windows) == 1
    assert small_encoder.reading(nothing, "WINDOWS").truncate == "END"  # no window left: read as END reads it
    X = small_encoder.embed([tail, nothing], truncate="WINDOWS")
    assert np.isfinite(X).all() and np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-4)


def test_length_notes_say_how_long_inputs_were_read(small_encoder):
    texts = ["short and sweet", *LONG_TICKETS]
    assert length_notes(small_encoder, texts[:1]) == []
    cut = length_notes(small_encoder, texts, truncate="END")
    read = length_notes(small_encoder, texts, truncate="WINDOWS")
    assert [n.index for n in cut] == [1, 2] == [n.index for n in read]
    assert "cut at the end (END)" in str(cut[0]) and str(cut[0]).startswith("input 2:")
    assert "read in 2 windows" in str(read[0])
