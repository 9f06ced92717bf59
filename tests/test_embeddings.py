import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from playground._files import cache_dir
from playground.batching import encoding_of
from playground.embeddings import (
    MPNET_FOLDER,
    ModelNotFoundError,
    bf16_supported,
    get_encoder,
    large_model_path,
    model_path,
    resolve_precision,
)

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "The package was damaged",
    "I would recommend this to others",
    "¿Dónde está la estación de tren?",
    "東京の天気はどうですか",
    "short",
    "A much longer sentence that goes on about delivery times, refunds, broken zips and a courier who never rang the bell. " * 3,
]


def test_auto_resolves_to_an_explicit_precision():
    assert resolve_precision("auto") == ("bf16" if bf16_supported() else "fp32")
    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, int8 - received 'int4'"):
        resolve_precision("int4")


BF16_MODELS = ["small", "large"] if bf16_supported() else ["small"]
"""bf16 runs on every CPU; without native bf16 (AVX2-only machines) torch emulates it, 10x slower, and ``auto``
never picks it, so the large model's bf16 (the same code path as small's) is checked where the CPU has it."""


@pytest.mark.parametrize("model", BF16_MODELS)
def test_bf16_agrees_with_fp32(model):
    fp32 = get_encoder(model, precision="fp32").embed(TEXTS)
    bf16 = get_encoder(model, precision="bf16").embed(TEXTS)
    cosine = (fp32 * bf16).sum(axis=1)
    assert cosine.min() >= 0.999, cosine
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, rtol=1e-5)


def test_unknown_base_model():
    with pytest.raises(ModelNotFoundError, match="unknown base model 'medium'"):
        model_path("medium")


def test_large_model_unzips_once_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSIFY_CACHE_DIR", str(tmp_path))
    # A half-finished unzip from a killed process must not count as the model.
    stale = tmp_path / ".mpnet-killed"
    (stale / "x" / MPNET_FOLDER).mkdir(parents=True)
    half = tmp_path / MPNET_FOLDER
    half.mkdir()
    (half / "config.json").write_text("{}")
    path = large_model_path()
    assert path == cache_dir() / MPNET_FOLDER
    assert (path / "model.safetensors").stat().st_size > 400_000_000
    assert (path / ".complete").is_file()
    assert not list(tmp_path.glob(".mpnet-*/model.zip"))  # no leftover joined zip of ours
    mtime = (path / "model.safetensors").stat().st_mtime
    assert large_model_path() == path and (path / "model.safetensors").stat().st_mtime == mtime


def test_models_load_offline_in_a_fresh_process(tmp_path):
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
        "from playground.embeddings import get_encoder\n"
        "print(get_encoder('small').embed(['hello']).shape)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(1, 384)"


def test_precision_can_be_configured_for_the_process(monkeypatch):
    monkeypatch.setenv("CLASSIFY_PRECISION", "fp32")
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"  # an explicit choice wins
    monkeypatch.setenv("CLASSIFY_PRECISION", "fp8")
    with pytest.raises(ValueError, match="CLASSIFY_PRECISION must be one of auto, fp32, bf16, int8 - received 'fp8'"):
        resolve_precision("auto")


@pytest.mark.parametrize(("model", "precision"),
                         [("small", "fp32"), ("large", "fp32")] + [(m, "bf16") for m in BF16_MODELS])
def test_the_lean_body_is_sentence_transformers(model, precision):
    """TorchBody (transformers alone) gives sentence-transformers' tokens and embeddings."""
    import torch
    from sentence_transformers import SentenceTransformer

    from playground.embeddings import TorchBody
    encoder = get_encoder(model, precision=precision)
    assert isinstance(encoder.body, TorchBody)
    kwargs = {"dtype": torch.bfloat16} if precision == "bf16" else {}
    st = SentenceTransformer(str(model_path(model)), device="cpu", model_kwargs=kwargs, local_files_only=True)
    texts = TEXTS + ["   leading and trailing spaces   ", "x " * 600]
    for text in texts:
        ours = encoding_of(encoder.body.tokenizer, [text], max_length=encoder.body.max_seq_length)["input_ids"][0]
        assert list(ours) == st.preprocess([text])["input_ids"][0].tolist()  # the ids the encode path pads
    assert (encoder.max_tokens, encoder.dimension) == (st.max_seq_length, st.get_embedding_dimension())
    with torch.inference_mode():
        theirs = torch.nn.functional.normalize(st.encode(texts, convert_to_tensor=True).float(), dim=1).numpy()
    ours = encoder.body.encode(texts, batch_size=3)
    assert (ours * theirs).sum(axis=1).min() >= (0.99999 if precision == "fp32" else 0.999)


def test_a_saved_body_runs_lean_and_other_pipelines_keep_sentence_transformers(tmp_path):
    from playground.embeddings import Encoder, TorchBody, standard_pipeline

    small = get_encoder("small", precision="fp32")
    small.model.save(str(tmp_path / "body"))
    assert standard_pipeline(tmp_path / "body") is not None
    lean = Encoder(tmp_path / "body")
    assert isinstance(lean.body, TorchBody) and (lean.max_tokens, lean.dimension) == (small.max_tokens, small.dimension)
    assert (lean.embed(TEXTS) * small.embed(TEXTS)).sum(axis=1).min() >= 0.99999
    pooling = tmp_path / "body" / "1_Pooling" / "config.json"
    pooling.write_text(pooling.read_text().replace('"mean"', '"cls"'))
    assert standard_pipeline(tmp_path / "body") is None
    other = Encoder(tmp_path / "body")
    assert other.body is None and other.embed(["hello"]).shape == (1, 384)


def test_classify_path_imports_no_sentence_transformers_nor_scikit_learn():
    """The CLI (which starts the server), the server and a classify call on small: 165 MB and 1.5 s they do not
    need, nor transformers' modeling (1.6-1.9 s; the small model runs in playground/bert.py)."""
    code = ("import sys; from playground import classify; import playground.server, playground.cli; "
            "classify(['late again'], [('late', 'n'), ('slow', 'n'), ('great', 'p'), ('fine', 'p')]); "
            "print(sorted(m for m in ('sentence_transformers', 'sklearn', 'pandas', 'pyarrow', 'onnxruntime', "
            "'transformers.modeling_utils', 'scipy') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_weights_read_tensor_by_tensor_are_the_files(tmp_path):
    import torch
    from safetensors.torch import load_file

    from playground.embeddings import read_safetensors

    path = model_path("small") / "model.safetensors"
    ours, theirs = read_safetensors(path, torch.float32), load_file(str(path))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert all(v.dtype == torch.bfloat16 for v in read_safetensors(path, torch.bfloat16).values() if v.is_floating_point())
    cut = tmp_path / "model.safetensors"
    cut.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="truncated"):
        read_safetensors(cut, torch.float32)


def queued_calls(encoder, calls: list[tuple[list[str], str]]) -> tuple[list, int]:
    """Run ``calls`` (texts, truncate) in threads that all queue while the model is held, then let them go:
    what each call returned (or raised) and how many encoder passes served them."""
    import threading
    import time

    outcomes: list = [None] * len(calls)

    def call(i: int, texts: list[str], truncate: str) -> None:
        try:
            outcomes[i] = encoder.embed(texts, truncate=truncate)
        except Exception as exc:  # noqa: BLE001 - the test compares what each call got
            outcomes[i] = exc

    passes = encoder.encode_passes
    with encoder._lock:  # the model is busy: every call below queues behind it
        threads = [threading.Thread(target=call, args=(i, *c)) for i, c in enumerate(calls)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(encoder._queue) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(encoder._queue) == len(calls)
    for t in threads:
        t.join(60)
    return outcomes, encoder.encode_passes - passes


def test_concurrent_calls_are_encoded_together_and_each_gets_its_own_rows(small_encoder):
    calls = [([f"Order {i} arrived broken", f"Parcel number {i} is late, where is it?"], "END") for i in range(8)]
    small_encoder.clear_cache()
    outcomes, passes = queued_calls(small_encoder, calls)
    assert passes == 1  # eight calls, one pass of the model
    small_encoder.clear_cache()
    for (texts, _), got in zip(calls, outcomes):
        alone = small_encoder.embed(texts)
        assert got.shape == (2, small_encoder.dimension)
        assert np.min(np.sum(got * alone, axis=1)) > 0.9995  # the same rows, to batch rounding


def test_a_failing_call_fails_alone_when_calls_are_encoded_together(small_encoder):
    from playground.embeddings import TextTooLongError

    too_long = "word " * 2000
    calls = [(["A fine short review"], "NONE"), ([too_long], "NONE"), (["Another short one"], "END")]
    small_encoder.clear_cache()
    outcomes, _ = queued_calls(small_encoder, calls)
    assert isinstance(outcomes[1], TextTooLongError)
    assert outcomes[0].shape == outcomes[2].shape == (1, small_encoder.dimension)


def test_windows_and_cut_calls_queued_together_each_read_their_own_way(small_encoder):
    from fixtures.long_documents import LONG_TICKETS

    long_text = next(iter(LONG_TICKETS))
    calls = [([long_text, "A short one"], "WINDOWS"), ([long_text], "END"), ([long_text], "START")]
    small_encoder.clear_cache()
    outcomes, passes = queued_calls(small_encoder, calls)
    assert passes == 1
    for (texts, truncate), got in zip(calls, outcomes):
        small_encoder.clear_cache()
        alone = small_encoder.embed(texts, truncate=truncate)
        assert np.min(np.sum(got * alone, axis=1)) > 0.9995
    assert float(outcomes[0][0] @ outcomes[1][0]) < 0.999  # windows read more than the cut start
