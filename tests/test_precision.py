"""Encoder precisions: bf16 and int8 agree with fp32, the seed stays negative, int8 builds are atomic.

The int8 model of the small encoder is built once per session into a temporary cache folder
(``CLASSIFY_CACHE_DIR``), so the tests never read or write the user's cache.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from playground import onnx_int8
from playground.embeddings import PRECISIONS, bf16_supported, get_encoder, model_path, resolve_precision
from playground._files import READY_MARK
from playground.batching import encoding_of
from playground.onnx_int8 import int8_folder, load_int8_body, source_key

TEXTS = [
    "The package was damaged",
    "I would recommend this to others",
    "  The order came 5 days early  ",
    "¿Dónde está la estación de tren?",
    "東京の天気はどうですか",
    "short",
    "Refund please!!! The zip broke on day two and support never answered my three emails.",
    "A much longer sentence that goes on about delivery times, refunds, broken zips and a courier who never rang the bell. " * 6,
]


@pytest.fixture(scope="session")
def int8_cache(tmp_path_factory) -> Path:
    """A private cache folder holding the small model's int8 build (built once, ~15 s)."""
    folder = tmp_path_factory.mktemp("int8-cache")
    old = os.environ.get("CLASSIFY_CACHE_DIR")
    os.environ["CLASSIFY_CACHE_DIR"] = str(folder)
    try:
        get_encoder("small", precision="int8")  # cached per process from here on
    finally:
        if old is None:
            os.environ.pop("CLASSIFY_CACHE_DIR", None)
        else:
            os.environ["CLASSIFY_CACHE_DIR"] = old
    return folder


def _fresh(encoder, texts):
    encoder.clear_cache()
    return encoder.embed(texts)


def test_int8_is_one_of_the_precisions_and_auto_never_picks_it(monkeypatch):
    assert PRECISIONS == ("auto", "fp32", "bf16", "int8")
    monkeypatch.delenv("CLASSIFY_PRECISION", raising=False)
    assert resolve_precision("auto") == ("bf16" if bf16_supported() else "fp32")
    assert resolve_precision("int8") == "int8"
    monkeypatch.setenv("CLASSIFY_PRECISION", "int8")  # the process-wide opt-in (CLI --precision, server)
    assert resolve_precision("auto") == "int8"


def test_cli_offers_every_precision():
    from playground.cli import build_parser

    for precision in PRECISIONS:
        assert build_parser().parse_args(["classify", "--precision", precision, "x"]).precision == precision
    with pytest.raises(SystemExit):
        build_parser().parse_args(["classify", "--precision", "int4", "x"])


def test_bf16_and_int8_agree_with_fp32(int8_cache):
    fp32 = _fresh(get_encoder("small", precision="fp32"), TEXTS)
    bf16 = _fresh(get_encoder("small", precision="bf16"), TEXTS)
    int8 = _fresh(get_encoder("small", precision="int8"), TEXTS)
    assert (fp32 * bf16).sum(axis=1).min() >= 0.999
    cosine = (fp32 * int8).sum(axis=1)
    assert cosine.min() >= 0.95, cosine
    assert int8.dtype == np.float32 and int8.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, rtol=1e-5)


def test_int8_keeps_the_pipeline_of_sentence_transformers(int8_cache):
    """Same tokens (max_seq_length, truncation) as the torch model.

    Dynamic quantisation picks one activation scale per batch tensor, so a text's int8 vector
    moves a little with its batch mates (measured cosine 0.977-0.996 alone vs batched); the
    bound below catches a pooling or padding bug, which gives far lower cosines.
    """
    fp32, int8 = get_encoder("small", precision="fp32"), get_encoder("small", precision="int8")
    assert (int8.max_tokens, int8.dimension) == (fp32.max_tokens, fp32.dimension)
    for text in TEXTS:
        ours = encoding_of(int8.body.tokenizer, [text], max_length=int8.body.max_seq_length)["input_ids"][0]
        assert list(ours) == fp32.model.preprocess([text])["input_ids"][0].tolist()
    alone = np.stack([int8.body.encode([t])[0] for t in TEXTS])
    batched = int8.body.encode(TEXTS, batch_size=3)
    assert (batched * alone).sum(axis=1).min() >= 0.97
    assert int8.fit_to_length(TEXTS[-1], "START") == fp32.fit_to_length(TEXTS[-1], "START")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_seed_is_negative_in_every_precision(seed, precision, int8_cache):
    from playground import classify

    results = classify(list(seed.inputs), seed.examples, "small", precision=precision)
    assert [r.prediction for r in results] == ["negative", "negative"]


def test_the_cache_is_keyed_by_model_and_precision(int8_cache):
    encoders = {p: get_encoder("small", precision=p) for p in ("fp32", "bf16", "int8")}
    assert len({id(e) for e in encoders.values()}) == 3
    assert [e.precision for e in encoders.values()] == ["fp32", "bf16", "int8"]
    assert get_encoder("small", precision="int8") is encoders["int8"]
    built = [p for p in (int8_cache / "int8").iterdir() if (p / READY_MARK).is_file()]
    assert len(built) == 1 and (built[0] / "model.onnx").stat().st_size > 10_000_000


def test_a_changed_body_gets_a_new_int8_key(tmp_path):
    """A retrained custom model keeps its path; its files' mtimes change, so the key does too."""
    body = tmp_path / "body"
    shutil.copytree(model_path("small"), body)
    before = int8_folder(body)
    weights = body / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert int8_folder(body) != before
    assert source_key(body) == int8_folder(body).name.rsplit("-", 1)[1]


def test_an_interrupted_build_leaves_nothing_and_a_corrupt_one_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSIFY_CACHE_DIR", str(tmp_path))
    source = model_path("small")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(onnx_int8, "_quantise", killed)
        with pytest.raises(KeyboardInterrupt):
            load_int8_body(source, progress=None)
    assert list((tmp_path / "int8").iterdir()) == []  # no temp folder left, nothing marked complete

    folder = int8_folder(source)  # a complete-marked folder whose model file is damaged
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    (folder / "model.onnx").write_bytes(b"not an onnx graph")
    (folder / READY_MARK).write_text("ok\n")
    said: list[str] = []
    body = load_int8_body(source, progress=said.append)
    assert "could not be loaded" in said[0] and "rebuilding" in said[0]
    assert body.encode(["The package was damaged"]).shape == (1, 384)
    assert (folder / READY_MARK).is_file() and (folder / "model.onnx").stat().st_size > 10_000_000


def test_a_saved_custom_model_loads_in_int8(tmp_path, monkeypatch, trained_dir):
    from playground.engine import load_model

    monkeypatch.setenv("CLASSIFY_CACHE_DIR", str(tmp_path))
    texts = ["my card was charged twice", "the app crashes when I log in", "how do I change my address",
             "refund has not arrived", "cannot reset my password"]
    fp32 = load_model("tickets", directory=trained_dir, precision="fp32")
    int8 = load_model("tickets", directory=trained_dir, precision="int8")
    assert int8.encoder.precision == "int8" and int8.encoder is not fp32.encoder
    assert [p.name for p in (tmp_path / "int8").iterdir()][0].startswith("tickets-body-")
    a = fp32.encoder.embed(texts)
    b = int8.encoder.embed(texts)
    assert (a * b).sum(axis=1).min() >= 0.95
    agree = [x.prediction == y.prediction for x, y in zip(fp32.classify(texts), int8.classify(texts))]
    assert sum(agree) >= len(texts) - 1, agree
