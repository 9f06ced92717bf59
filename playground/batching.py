"""Padding-aware batches for the encoders: texts of like length together, a token budget per batch.

A batch costs about what its longest text costs times its rows, so padding is work thrown away.
Sorting one call's texts by token length and splitting them into batches of at most
``TOKENS_PER_BATCH`` padded tokens where padding is least keeps that waste small whether a call holds 1,000 texts (a bulk chunk) or 96 (one
Cohere-shaped request). With a fixed 64 rows per batch sorted by characters, 96 texts a call ran
at 0.65-0.75x the bulk speed on the same texts (issue #28; docs/BENCHMARKS.md has the rows).
A body that packs its real tokens (``bert.BertEncoder``: padding costs only in its attention)
takes bigger passes (``PACKED``): a call's few passes then cost what a bulk chunk's many do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

TOKENS_PER_BATCH = 512
"""Padded tokens per forward pass at most. On 2 CPU cores a forward of the small model costs about the
same per token from a few hundred tokens up; 512 ran 96-text calls fastest of 256-2048 (sst2, ag_news)."""
BATCH_OVERHEAD_TOKENS = 32
"""What one more forward pass costs, counted in padded tokens: the price of splitting a batch in two."""


@dataclass(frozen=True, slots=True)
class BatchBudget:
    """How a body's texts are cut into forward passes: ``max_tokens`` padded tokens each at most, and
    what one more pass costs (``overhead``, in padded tokens) against the padding it saves."""

    max_tokens: int
    overhead: int


PADDED = BatchBudget(TOKENS_PER_BATCH, BATCH_OVERHEAD_TOKENS)
"""For a body that computes every padded token (``transformers``' models, ONNX Runtime)."""
PACKED = BatchBudget(2048, 256)
"""For a body whose padding costs only in the attention (``bert.BertEncoder``): fewer, bigger passes.
Of 512-4,096 tokens and 32-512 overhead, this ran 96-text calls at 0.96-0.98x the 1,024-text
chunks' speed (sst2, ag_news, small bf16; 512 / 32: 0.88x on sst2)."""


def length_batches(lengths: Sequence[int], *, max_rows: int, max_tokens: int = TOKENS_PER_BATCH,
                   overhead: int = BATCH_OVERHEAD_TOKENS) -> list[np.ndarray]:
    """Row indices in batches of like length: the split of the length-sorted rows with the fewest
    padded tokens (plus ``overhead`` per batch), each batch at most ``max_rows`` rows and
    ``max_tokens`` tokens once padded (a single text over the budget goes alone).

    Cutting the sorted rows greedily at the budget left 16-24 % of a 96-text call's tokens as
    padding on short-text sets; this split (dynamic programming over the cut points, O(rows x
    max_rows)) leaves 5-12 %.

    >>> [b.tolist() for b in length_batches([3, 9, 4, 8], max_rows=64, max_tokens=18, overhead=4)]
    [[1, 3], [2, 0]]
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1. But it was: {max_rows!r}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    longest = np.maximum(lengths[order], 1)
    n = len(order)
    cost = np.zeros(n + 1)  # cost[j]: the cheapest split of the first j sorted rows
    cut = np.zeros(n + 1, dtype=np.int64)  # cut[j]: where the last batch of that split starts
    for j in range(1, n + 1):
        starts = np.arange(max(0, j - max_rows), j)
        padded = (j - starts) * longest[starts]  # a batch of sorted rows start..j-1 pads to its first
        total = cost[starts] + padded + overhead
        total[(padded > max_tokens) & (starts < j - 1)] = np.inf
        best = int(np.argmin(total))
        cost[j], cut[j] = total[best], starts[best]
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j]:j])
        j = int(cut[j])
    return batches[::-1]


def pad_rows(encoding: Mapping[str, Sequence[Sequence[int]]], rows: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
    """The tokenizer's unpadded lists for ``rows``, right-padded to the longest as int64 arrays.

    ``input_ids`` pad with the tokenizer's pad id; the attention mask and token types with 0 (what
    the tokenizer's own ``padding=True`` gives).
    """
    width = max(len(encoding["input_ids"][i]) for i in rows)
    out = {}
    for name, values in encoding.items():
        array = np.full((len(rows), width), pad_id if name == "input_ids" else 0, dtype=np.int64)
        for r, i in enumerate(rows):
            array[r, :len(values[i])] = values[i]
        out[name] = array
    return out


def encoding_of(tokenizer, texts: Sequence[str], *, max_length: int, offsets: bool = False) -> dict[str, list]:
    """The tokenizer's unpadded lists for ``texts``, cut at ``max_length`` as sentence-transformers cuts
    (with ``offset_mapping`` when ``offsets``)."""
    encoding = tokenizer(list(texts), truncation="longest_first", max_length=max_length,
                         return_offsets_mapping=offsets)
    return {name: encoding[name] for name in encoding.keys()}


def tokenized_batches(tokenizer, texts: Sequence[str], *, max_length: int, max_rows: int,
                      budget: BatchBudget = PADDED):
    """``(rows, features)`` for every batch of ``texts``: tokenized once, cut at ``max_length`` as
    sentence-transformers cuts, grouped by ``length_batches`` and padded by ``pad_rows``."""
    return padded_batches(encoding_of(tokenizer, texts, max_length=max_length), pad_id=tokenizer.pad_token_id or 0,
                          max_rows=max_rows, budget=budget)


def padded_batches(encoding: Mapping[str, Sequence[Sequence[int]]], *, pad_id: int, max_rows: int,
                   budget: BatchBudget = PADDED):
    """``(rows, features)`` for every ``length_batches`` batch of an unpadded ``encoding``, padded by ``pad_rows``."""
    for rows in length_batches([len(ids) for ids in encoding["input_ids"]], max_rows=max_rows,
                               max_tokens=budget.max_tokens, overhead=budget.overhead):
        yield rows, pad_rows(encoding, rows, pad_id)


def mean_pooled_unit(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each row's token vectors averaged where ``mask`` is 1, then L2-normalised (sentence-transformers'
    mean pooling and ``Normalize``), in float32 whatever the body's precision."""
    weights = mask.astype(np.float32)[..., None]
    pooled = (hidden.astype(np.float32) * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def pooled_embeddings(body, texts: Sequence[str], *, max_rows: int) -> np.ndarray:
    """What both bodies' ``encode`` returns: ``body.hidden`` over the length batches (cut as ``body.budget``
    says), mean-pooled and normalised."""
    out = np.empty((len(texts), body.dimension), dtype=np.float32)
    for rows, features in tokenized_batches(body.tokenizer, texts, max_length=body.max_seq_length, max_rows=max_rows,
                                            budget=body.budget):
        out[rows] = mean_pooled_unit(body.hidden(features), features["attention_mask"])
    return out


def token_vectors(body, texts: Sequence[str], *, max_rows: int) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
    """Per text, its tokens' output vectors ``(tokens, dimension)`` (special tokens included, as the
    mean pooling counts them) and each token's character ``(start, end)`` in the text (``(0, 0)`` for
    the special tokens): what ``explain.py`` needs to leave a word's tokens out of the mean without
    running the model again."""
    encoding = encoding_of(body.tokenizer, texts, max_length=body.max_seq_length, offsets=True)
    offsets = encoding.pop("offset_mapping")
    out: list = [None] * len(texts)
    for rows, features in padded_batches(encoding, pad_id=body.tokenizer.pad_token_id or 0, max_rows=max_rows,
                                         budget=body.budget):
        hidden = body.hidden(features)
        for r, i in enumerate(rows):
            n = len(encoding["input_ids"][i])
            out[i] = (hidden[r, :n].astype(np.float32), [tuple(o) for o in offsets[i]])
    return out
