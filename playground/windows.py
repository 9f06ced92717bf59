"""Long texts read in windows: where to cut a text longer than the encoder's window (``truncate="WINDOWS"``).

A leaf: plain functions over a text and its tokens' character offsets, so every path (``classify``,
bulk files, Spark, the page, the API, tuning) gets the same cuts through ``Encoder.embed``.

A text within the window is read whole, exactly as END reads it. A longer one is cut into windows
of the window's size in tokens, each ending at a sentence end when one lies in its second half,
else at a word start; the next window starts ``WINDOW_OVERLAP`` tokens before the previous end (at
a sentence start when one lies in that overlap), so a sentence cut in two is read whole once. At
most ``max_windows`` windows are read (``CLASSIFY_MAX_WINDOWS``, default ``DEFAULT_MAX_WINDOWS``):
past them the text is not read, and ``Reading.capped`` says so. Windows with no letter or digit
(a tail of dashes, spaces and punctuation) are dropped; a text with no window left is read as END.

The window embeddings are averaged, weighted by their tokens, and renormalised
(``combine_windows``): measured against averaging the windows' probabilities in docs/BENCHMARKS.md
("Long texts").

>>> spans = window_spans("One. Two.", [(0, 3), (3, 4), (5, 8), (8, 9)], limit=2, overlap=0, max_windows=4)
>>> spans.windows
((0, 4), (5, 9))
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_WINDOWS = 16
"""Windows read per text at most: 16 x 254 tokens is about 3,000 words (small), 16 x 382 about 4,500 (large).
A longer text costs at most 16 short texts; the rest of it is not read (the page and ``Reading`` say so)."""
MAX_WINDOWS_ENV = "CLASSIFY_MAX_WINDOWS"
"""Sets the cap for the process (the server, the CLI, bulk jobs, Spark's local workers) in one place."""
MAX_WINDOWS_LIMIT = 1024
WINDOW_OVERLAP = 32
"""Tokens shared by two neighbouring windows: a sentence cut by a window's end is read whole in the next."""
SENTENCE_ENDS = frozenset(".!?…。！？")
WORD_SNAP = 8
"""A cut moves back at most this many tokens to fall between words rather than inside one."""
PREFIX_CHARS_PER_TOKEN = 8
"""Only the start of a huge text is tokenized: ``max_windows * window * 8`` characters first, more if that
held too few tokens; a 5 MB cell then costs the tokenizer 30-50 kB, not 5 MB."""


def max_windows_setting(value: int | None = None) -> int:
    """``value``, else ``$CLASSIFY_MAX_WINDOWS``, else ``DEFAULT_MAX_WINDOWS``; a ``ValueError`` naming a bad one."""
    source = "max_windows"
    if value is None:
        raw = os.environ.get(MAX_WINDOWS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_WINDOWS
        source = MAX_WINDOWS_ENV
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{MAX_WINDOWS_ENV} must be a whole number of windows from 1 to {MAX_WINDOWS_LIMIT} "
                             f"(e.g. 16). But it was: {raw!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WINDOWS_LIMIT:
        raise ValueError(f"{source} must be a whole number of windows from 1 to {MAX_WINDOWS_LIMIT} (e.g. 16). "
                         f"But it was: {value!r}")
    return value


@dataclass(frozen=True)
class Reading:
    """How the encoder reads one text: which characters, in how many windows.

    ``tokens`` is the text's length in word pieces (a lower bound when ``counted_all`` is false: only the
    start of a huge text is tokenized). ``windows`` are ``(start, end)`` character spans; one span for
    END and START. ``capped``: the window cap stopped the reading before the end of the text.
    """

    tokens: int
    limit: int
    windows: tuple[tuple[int, int], ...]
    truncate: str
    capped: bool = False
    counted_all: bool = True
    window_tokens: tuple[int, ...] = ()
    """Each window's length in word pieces: its weight in the text's mean embedding."""

    @property
    def longer(self) -> bool:
        """Longer than the model's window: cut (END / START) or read in windows (WINDOWS)."""
        return self.tokens > self.limit

    @property
    def span(self) -> tuple[int, int]:
        """The characters read, from the first window's start to the last one's end."""
        if not self.windows:
            return 0, 0
        return self.windows[0][0], self.windows[-1][1]

    def describe(self, length: int) -> str:
        """How a text of ``length`` characters was read, in words (for the page, bulk notes and the CLI)."""
        count = f"{self.tokens:,}" if self.counted_all else f"more than {self.tokens:,}"
        head = f"{count} word pieces, over the model's window of {self.limit}"
        if self.truncate == "WINDOWS":
            read = f"read in {len(self.windows)} window{'s' if len(self.windows) > 1 else ''}"
            if self.capped:
                read += (f" (the cap): characters {self.span[1]:,} to {length:,} were not read; "
                         f"raise {MAX_WINDOWS_ENV} to read more")
            elif len(self.windows) == 1:
                read += " (the rest has no letters or digits)"
            return f"{head}: {read}"
        start, end = self.span
        if start > 0:
            return f"{head}: cut at the start (START), read from character {start:,} of {length:,}"
        return f"{head}: cut at the end ({self.truncate}), read up to character {end:,} of {length:,}"


def is_sentence_end(text: str, start: int, end: int) -> bool:
    """A token that ends a sentence: its last character is . ! ? … and the next one is a space or the end."""
    return end > start and text[end - 1] in SENTENCE_ENDS and (end == len(text) or text[end].isspace())


def has_words(text: str) -> bool:
    """Any letter or digit: a window of spaces and punctuation only says nothing and is dropped."""
    return any(c.isalnum() for c in text)


@dataclass(frozen=True)
class WindowSpans:
    """The windows of one text in characters, their lengths in tokens, and whether the cap stopped them early."""

    windows: tuple[tuple[int, int], ...]
    tokens: tuple[int, ...]
    capped: bool


def window_spans(text: str, offsets: Sequence[tuple[int, int]], *, limit: int, overlap: int = WINDOW_OVERLAP,
                 max_windows: int = DEFAULT_MAX_WINDOWS, total_tokens: int | None = None) -> WindowSpans:
    """Cut ``text`` (its word pieces at ``offsets``, no special tokens) into windows of at most ``limit`` tokens.

    ``total_tokens`` is the text's full length when ``offsets`` cover only its start (a huge text); the
    windows then never run past ``offsets``. Windows without a letter or digit are left out.
    """
    n = len(offsets)
    if limit < 2:
        raise ValueError(f"limit must be at least 2 tokens. But it was: {limit!r}")
    overlap = max(0, min(overlap, limit // 2))
    total = n if total_tokens is None else total_tokens
    ends = [i + 1 for i, (a, b) in enumerate(offsets) if is_sentence_end(text, a, b)]  # token counts after a sentence end

    def word_start(i: int) -> bool:  # token i begins a word (not a ## piece glued to the previous token)
        return i <= 0 or i >= n or offsets[i][0] != offsets[i - 1][1]

    windows: list[tuple[int, int]] = []
    start, end = 0, 0
    while start < n and len(windows) < max_windows:
        end = min(start + limit, n)
        if end < total:
            k = bisect_right(ends, end) - 1  # the last sentence end at or before `end`
            if k >= 0 and ends[k] > start + limit // 2:
                end = ends[k]
            else:
                for back in range(WORD_SNAP):
                    if end - back > start + 1 and word_start(end - back):
                        end -= back
                        break
        windows.append((start, end))
        if end >= n:
            break
        following = end - overlap
        k = bisect_left(ends, following)  # the first sentence end inside the overlap: start right after it
        following = ends[k] if k < len(ends) and ends[k] < end else following
        while following < end and not word_start(following):
            following += 1
        start = max(following, start + 1)
    capped = bool(windows) and (windows[-1][1] < total)
    kept = [((offsets[a][0], offsets[b - 1][1]), b - a) for a, b in windows]
    kept = [(span, size) for span, size in kept if has_words(text[span[0]:span[1]])]
    return WindowSpans(tuple(span for span, _ in kept), tuple(size for _, size in kept), capped)


def token_offsets(tokenizer, text: str, need: int) -> tuple[list[tuple[int, int]], bool]:
    """The word pieces' character offsets of ``text`` (no special tokens), and whether they are all of them.

    Only as much of a huge text as holds more than ``need`` pieces is tokenized (a 5 MB cell costs the
    tokenizer a few tens of kB); the piece at the prefix's cut, maybe half a word, is dropped.
    """
    budget = max(need, 1) * PREFIX_CHARS_PER_TOKEN
    while budget < len(text):
        offsets = tokenizer(text[:budget], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) > need + 1:
            return offsets[:-1], False
        budget *= 4
    return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"], True


def window_texts(tokenizer, text: str, *, limit: int, max_windows: int) -> tuple[list[str], list[int]]:
    """``text`` cut into windows of at most ``limit`` word pieces (``window_spans``), with each one's pieces;
    ``[text]`` alone when it fits, or when no window has a letter or digit. For tuning and its head, which
    read examples through a ``SentenceTransformer`` rather than the ``Encoder``."""
    offsets, _ = token_offsets(tokenizer, text, max_windows * limit)
    if len(offsets) <= limit:
        return [text], [max(len(offsets), 1)]
    spans = window_spans(text, offsets, limit=limit, max_windows=max_windows)
    if not spans.windows:
        return [text], [limit]
    return [text[a:b] for a, b in spans.windows], list(spans.tokens)


def combine_windows(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """One L2-normalised embedding from a text's window embeddings, each weighted (by its tokens)."""
    w = np.asarray(weights, dtype=np.float64)
    mean = (vectors.astype(np.float64) * (w / w.sum())[:, None]).sum(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm if norm > 0 else mean).astype(np.float32)
