"""Padding-aware batches: every row once, within the budget, and the same embeddings as one text at a time."""

from __future__ import annotations

import numpy as np
import pytest

from playground.batching import TOKENS_PER_BATCH, length_batches, pad_rows
from playground.embeddings import get_encoder


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_row_once_within_the_budget(seed):
    lengths = np.random.default_rng(seed).integers(1, 300, size=257)
    batches = length_batches(lengths, max_rows=64)
    assert sorted(np.concatenate(batches).tolist()) == list(range(257))
    for rows in batches:
        assert len(rows) <= 64
        assert len(rows) == 1 or len(rows) * lengths[rows].max() <= TOKENS_PER_BATCH


def test_like_lengths_go_together_and_a_long_text_goes_alone():
    batches = [b.tolist() for b in length_batches([600, 3, 40, 3, 41], max_rows=8, max_tokens=100)]
    assert batches[0] == [0]
    assert sorted(map(sorted, batches[1:])) == [[1, 3], [2, 4]]
    assert length_batches([], max_rows=8) == []
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        length_batches([3], max_rows=0)


def test_pad_rows_pads_like_the_tokenizer():
    encoding = {"input_ids": [[101, 7, 102], [101, 102]], "attention_mask": [[1, 1, 1], [1, 1]]}
    padded = pad_rows(encoding, [1, 0], pad_id=0)
    assert padded["input_ids"].tolist() == [[101, 102, 0], [101, 7, 102]]
    assert padded["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]


def test_a_mixed_call_gives_each_text_its_own_embedding():
    """Batching by length must not change what a text embeds to beyond rounding: padding is masked out
    (measured cosine 0.99988 for "ok" padded beside longer texts; a pooling or padding bug gives far less)."""
    encoder = get_encoder("small")
    texts = ["ok", "The package was damaged and the box was wet", "fine " * 120, "Great value, fast delivery!",
             "", "Delivery took three weeks, the courier never called and support did not answer my emails"]
    together = encoder.body.encode(texts, batch_size=64)
    alone = np.stack([encoder.body.encode([t])[0] for t in texts])
    assert (together * alone).sum(axis=1).min() >= 0.9995
