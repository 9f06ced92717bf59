"""int8 encoders: the transformer exported to ONNX once, its weights quantised, run by ONNX Runtime.

Why a separate backend: torch's own dynamic quantisation measured a cosine of 0.84 to fp32,
while ONNX Runtime's (int8 weights per output channel, MatMuls only) keeps it above 0.97 and
runs 2-3x faster than torch fp32 on a CPU with VNNI. The build happens on first use of
``precision="int8"`` for a model, never at import, and is cached:

``cache_dir()/int8/<label>-<key>/``: ``model.onnx`` (quantised), ``tokenizer/``, ``meta.json``,
``.complete``. The key hashes the source folder's path and every file's size and mtime (plus
the build settings), so a retrained custom model gets a new build and never a stale one.

The folder is built under a temporary name, checked (the fp32 export must reproduce
sentence-transformers' embeddings, the int8 model must stay close to them), marked complete
and renamed into place; an interrupted build never passes for a model, and a complete folder
that no longer loads is rebuilt once.

Tokenisation, mean pooling and normalisation repeat sentence-transformers' pipeline (same
tokenizer, ``max_seq_length``, ``truncation="longest_first"``, mask-weighted mean clamped at
1e-9, L2 norm); the build refuses bodies whose pipeline is anything else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from ._files import READY_MARK, cache_dir, publish_folder
from .batching import PADDED, encoding_of, pooled_embeddings

INT8_DIR = "int8"
ONNX_NAME = "model.onnx"
META_NAME = "meta.json"
TOKENIZER_DIR = "tokenizer"
FORMAT_VERSION = 1
OPSET = 17
QUANTISATION = {"weight_type": "QInt8", "per_channel": True, "reduce_range": False, "op_types": ["MatMul"],
                "const_b_only": True, "fallback": "keep FFN down-projections fp32 below cosine 0.97"}
"""Chosen on 400 SST-2 + AG News texts (MiniLM, min / mean cosine to fp32): QInt8 per-channel
MatMul-only 0.979 / 0.992; the default op set (MatMul + Gather) 0.973 / 0.992; per-tensor
0.894 / 0.957; reduce_range (for CPUs without VNNI) 0.967 / 0.990. MPNet (large) falls to 0.50
min / 0.85 mean that way: its FFN down-projections see GELU outputs with outliers that one
dynamic int8 scale per tensor cannot hold; keeping those 12 MatMuls in fp32 gives 0.952 / 0.988.
So the build tries everything first and keeps the down-projections fp32 when the check
sentences fall under ``FULL_INT8_MIN_COSINE``."""
FULL_INT8_MIN_COSINE = 0.97
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXPORT_MIN_COSINE = 0.9999
"""The fp32 ONNX graph against sentence-transformers: anything lower means the pipeline differs."""
INT8_MIN_COSINE = 0.95
"""The quantised model against fp32 on the check sentences; a body below it is refused."""
CHECK_SENTENCES = (
    "The order is 5 days late",
    "This item was broken when it arrived",
    "I would recommend this to others",
    "   leading and trailing spaces   ",
    "¿Dónde está la estación de tren?",
    "short",
    "A much longer sentence that goes on about delivery times, refunds, broken zips and a courier "
    "who never rang the bell, so that it runs past the model's token limit and gets cut. " * 12,
)

Progress = Callable[[str], None]


class Int8Unavailable(LookupError):
    """int8 cannot be used here (packages missing, or the body drifts too far); the message says why."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _require_runtime() -> None:
    try:
        import onnxruntime  # noqa: F401  - heavy and optional: only when int8 is asked for
    except ImportError as exc:
        raise Int8Unavailable(
            "precision int8 needs ONNX Runtime: pip install onnx==1.23.2 onnxruntime==1.31.1 "
            "(or use precision fp32 / bf16)"
        ) from exc


def source_key(path: Path) -> str:
    """A hash of the folder's path, every file's name, size and mtime, and the build settings."""
    path = path.resolve()
    h = hashlib.sha256()
    h.update(f"v{FORMAT_VERSION}|{OPSET}|{json.dumps(QUANTISATION, sort_keys=True)}|{path}".encode())
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        st = file.stat()
        h.update(f"|{rel.as_posix()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def int8_folder(path: Path) -> Path:
    """Where the int8 build of the model in ``path`` lives (whether or not it is built yet)."""
    path = path.resolve()
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(path.parts[-2:]))[-60:]
    return cache_dir() / INT8_DIR / f"{label}-{source_key(path)}"


class OnnxBody:
    """A built int8 folder, loaded: tokenizer + ONNX Runtime session + mean pooling + L2 norm.

    >>> body = OnnxBody(int8_folder(model_path("small")))
    >>> body.encode(["The package was damaged"], batch_size=64).shape
    (1, 384)
    """

    def __init__(self, folder: Path, *, model_file: str = ONNX_NAME) -> None:
        import onnxruntime as ort  # heavy: only once an int8 body is loaded
        from transformers import AutoTokenizer

        self.folder = folder
        self.meta = json.loads((folder / META_NAME).read_text())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(folder / model_file), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder / TOKENIZER_DIR), local_files_only=True)
        self.max_seq_length = int(self.meta["max_seq_length"])
        self.dimension = int(self.meta["dimension"])
        self.budget = PADDED  # ONNX Runtime computes every padded token
        self.inputs = [i.name for i in self.session.get_inputs()]

    def hidden(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """The last hidden state of one padded batch (``batching.pad_rows``), ``(rows, tokens, dimension)``."""
        return self.session.run(None, {name: features[name] for name in self.inputs})[0]

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """L2-normalised float32 embeddings; texts of like token length batched together (``batching.py``)."""
        return pooled_embeddings(self, texts, max_rows=batch_size)


def load_int8_body(path: Path, *, progress: Progress | None = _stderr) -> OnnxBody:
    """The int8 body of the model in ``path``, built into the cache on first use.

    A complete folder that fails to load (a truncated file, a changed runtime) is reported on
    ``progress`` and rebuilt once; a second failure raises.
    """
    _require_runtime()
    folder = int8_folder(path)
    if (folder / READY_MARK).is_file():
        try:
            return OnnxBody(folder)
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is rebuilt, and said so
            if progress:
                progress(f"int8 cache {folder} could not be loaded ({type(exc).__name__}: {exc}); rebuilding it")
            shutil.rmtree(folder, ignore_errors=True)
    build_int8(path, folder, progress=progress)
    return OnnxBody(folder)


def _check_pipeline(st) -> None:
    """Refuse bodies whose pipeline is not Transformer → mean Pooling (→ Normalize)."""
    kinds = [type(m).__name__ for m in st]
    pooling_mode = getattr(st[1], "pooling_mode", None) if len(st) > 1 else None
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]) or pooling_mode != "mean":
        raise Int8Unavailable(
            f"int8 supports Transformer → mean Pooling → Normalize bodies; this one is {kinds} "
            f"(pooling {pooling_mode!r}): use fp32 or bf16"
        )


def build_int8(path: Path, target: Path, *, progress: Progress | None = _stderr) -> Path:
    """Export, quantise, check and publish the int8 folder for the model in ``path`` at ``target``."""
    import torch  # heavy: the export needs the torch model, only on the first int8 use
    from sentence_transformers import SentenceTransformer

    say = progress or (lambda message: None)
    started = time.perf_counter()
    say(f"Building the int8 encoder for {path} (one time, into {target.parent}): exporting to ONNX…")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".int8-", dir=target.parent))
    try:
        st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        st.eval()
        _check_pipeline(st)
        reference = st.encode(list(CHECK_SENTENCES), convert_to_numpy=True, normalize_embeddings=True,
                              show_progress_bar=False)
        sample = st.preprocess(list(CHECK_SENTENCES[:2]))
        names = [n for n in MODEL_INPUTS if n in sample]
        hf_model = st[0].auto_model

        class _Hidden(torch.nn.Module):
            def __init__(self, model: torch.nn.Module) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args: torch.Tensor) -> torch.Tensor:
                return self.model(**dict(zip(names, args))).last_hidden_state

        axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes; the checks below decide
            torch.onnx.export(_Hidden(hf_model).eval(), tuple(sample[n] for n in names), str(work / "fp32.onnx"),
                              input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
        st.tokenizer.save_pretrained(str(work / TOKENIZER_DIR))
        meta = {
            "format_version": FORMAT_VERSION, "source": str(path.resolve()), "key": source_key(path),
            "max_seq_length": int(st.max_seq_length), "dimension": int(st.get_embedding_dimension()),
            "inputs": names, "opset": OPSET, "quantisation": QUANTISATION,
            "versions": _versions(),
        }
        (work / META_NAME).write_text(json.dumps(meta, indent=2))

        exported = OnnxBody(work, model_file="fp32.onnx")
        for text in CHECK_SENTENCES:  # the same token ids as sentence-transformers gives
            ours = list(encoding_of(exported.tokenizer, [text], max_length=exported.max_seq_length)["input_ids"][0])
            theirs = st.preprocess([text])["input_ids"][0].tolist()
            if ours != theirs:
                raise Int8Unavailable(f"int8 build of {path}: tokenisation differs from sentence-transformers on {text[:40]!r}")
        cosine = float((exported.encode(CHECK_SENTENCES) * reference).sum(axis=1).min())
        if cosine < EXPORT_MIN_COSINE:
            raise Int8Unavailable(f"int8 build of {path}: the ONNX export differs from the torch model "
                                  f"(cosine {cosine:.5f} < {EXPORT_MIN_COSINE}); use fp32 or bf16")
        intermediate_size = int(getattr(hf_model.config, "intermediate_size", 0) or 0)
        del exported, st, hf_model

        kept: list[str] = []
        for attempt in ("all", "keep-ffn-down"):
            if attempt == "keep-ffn-down":
                kept = _ffn_down_matmuls(work / "fp32.onnx", intermediate_size)
                say(f"  min cosine {cosine:.3f} with every MatMul in int8: keeping the {len(kept)} FFN "
                    "down-projections in fp32…")
            else:
                say("  quantising the weights to int8…")
            _quantise(work / "fp32.onnx", work / ONNX_NAME, exclude=kept)
            cosine = float((OnnxBody(work).encode(CHECK_SENTENCES) * reference).sum(axis=1).min())
            if cosine >= FULL_INT8_MIN_COSINE:
                break
        (work / "fp32.onnx").unlink()
        if cosine < INT8_MIN_COSINE:
            raise Int8Unavailable(f"int8 drifts too far from fp32 for {path} (cosine {cosine:.3f} < "
                                  f"{INT8_MIN_COSINE}); use fp32 or bf16 for this model")
        meta["check_min_cosine"] = round(cosine, 5)
        meta["kept_fp32"] = kept
        meta["build_seconds"] = round(time.perf_counter() - started, 1)
        (work / META_NAME).write_text(json.dumps(meta, indent=2))
        publish_folder(work, target)
        _prune_stale(target, meta["source"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"  int8 encoder ready in {time.perf_counter() - started:.0f} s (min cosine to fp32 {cosine:.3f}): {target}")
    return target


def _quantise(source: Path, target: Path, *, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy and optional: only during a build

    root = logging.getLogger()
    quiet = [h for h in root.handlers] or [logging.NullHandler()]  # no implicit basicConfig from its hints
    if not root.handlers:
        root.addHandler(quiet[0])
    try:
        quantize_dynamic(str(source), str(target), weight_type=getattr(QuantType, QUANTISATION["weight_type"]),
                         per_channel=QUANTISATION["per_channel"], reduce_range=QUANTISATION["reduce_range"],
                         op_types_to_quantize=QUANTISATION["op_types"], nodes_to_exclude=exclude,
                         extra_options={"MatMulConstBOnly": QUANTISATION["const_b_only"]})
    finally:
        if isinstance(quiet[0], logging.NullHandler):
            root.removeHandler(quiet[0])


def _ffn_down_matmuls(graph: Path, intermediate_size: int) -> list[str]:
    """MatMuls whose weight has ``intermediate_size`` rows: the FFN down-projections after GELU."""
    import onnx  # heavy and optional: only during an int8 build

    model = onnx.load(str(graph), load_external_data=False)
    rows = {init.name: (init.dims[0] if init.dims else 0) for init in model.graph.initializer}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and intermediate_size and rows.get(node.input[1]) == intermediate_size]


def _prune_stale(current: Path, source: str) -> None:
    """Delete older builds of the same source folder (a retrained custom model leaves one behind)."""
    for other in current.parent.iterdir():
        if other == current or other.name.startswith(".") or not (other / META_NAME).is_file():
            continue
        try:
            if json.loads((other / META_NAME).read_text()).get("source") == source:
                shutil.rmtree(other, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "onnx", "onnxruntime", "transformers", "sentence-transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


__all__ = ["OnnxBody", "Int8Unavailable", "build_int8", "int8_folder", "load_int8_body", "source_key", "QUANTISATION"]
