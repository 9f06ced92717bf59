"""Classify a Spark DataFrame: millions of rows, the same answers as one machine.

Optional: the core never imports this module, and it needs ``pip install -r requirements-spark.txt``
(pyspark; Spark 4 runs on Java 17+). Spark does the distribution, the retries and the output
commit; this module only says what one Python worker does with one Arrow batch.

How the work is split, and why:

- **Driver, once.** ``engine.get_classifier`` (the call ``classify`` and bulk make) fits the
  few-shot examples or loads the custom model here, so every check runs before a job starts.
  What goes to the executors is a ``ShippedModel``: JSON text
  plus the head's arrays as safetensors bytes (a few hundred KB at most), never a pickled torch
  or scikit-learn object. A custom model's tuned body (a folder of safetensors) is handed to
  ``SparkContext.addFile`` so executors on other machines get a copy.
- **Each Python worker, once.** The encoder is loaded on the first batch and kept in the
  worker's process (``embeddings.get_encoder`` caches per process, and Spark reuses Python
  workers across tasks: ``spark.python.worker.reuse`` is true by default). ``diagnostics=True``
  adds the worker's pid, its encoder-load count and peak RSS to every row, to check that.
- **Each Arrow batch.** ``mapInPandas`` hands the worker ``spark.sql.execution.arrow.maxRecordsPerBatch``
  rows; they go through ``engine.CustomModel.classify`` (embed → head → ``single_label_results``
  / ``multi_label_results``), the very code a single machine runs, via ``bulk``'s per-row error
  handling. Batches differ from the single-machine ones, so the last digits of a confidence
  may move (measured ≤ 1e-3); predictions do not.

Rows whose text is null or blank get a null ``prediction`` and a reason in ``error``; the job
never fails on them. A missing text column fails before any job starts, naming the columns.

>>> from playground.spark import classify_dataframe, session
>>> spark = session("local[2]")
>>> out = classify_dataframe(spark.read.parquet("tickets.parquet"), "text",
...                          examples=[("late again", "negative"), ...], model="small")
>>> out.write.parquet("tickets-classified.parquet")
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

try:
    import pandas as pd
    from pyspark import SparkFiles, TaskContext
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DoubleType, IntegerType, MapType, StringType, StructField, StructType
except ImportError as exc:  # pragma: no cover - exercised by the CLI's message
    raise ImportError(
        f"playground.spark needs pyspark ({exc}): pip install -r requirements-spark.txt (Spark 4 also needs Java 17+)"
    ) from exc

from .bulk import MULTI_LABEL_JOIN, classify_chunk, unique_column
from .embeddings import DEFAULT_PRECISION, OFFLINE_ENV, PRECISIONS, get_encoder, is_loaded, resolve_precision
from .engine import Classification, CustomModel, FewShotModel, get_classifier, load_folder
from .store import BODY_DIR, CONFIG_NAME
from .validation import ExampleLike, ValidationError, check_truncate

PREDICTION_COLUMN = "prediction"
CONFIDENCE_COLUMN = "confidence"
CONFIDENCES_COLUMN = "confidences"
ERROR_COLUMN = "error"
NULL_TEXT = "null text"
DEFAULT_MASTER = "local[2]"
WORKER_ENV = {**OFFLINE_ENV, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
"""Set on every executor: models load offline, and one "Loading weights" bar per worker stays out of the log."""


# ----------------------------------------------------------------------------------------------
# What the driver sends


@dataclass(frozen=True)
class ShippedModel:
    """Everything an executor needs to classify, as plain data (JSON text + safetensors bytes).

    ``config`` is a model config as ``store`` saves it (``type``, ``base_model``, ``labels``,
    ``thresholds``, ``head``); ``head`` the head's arrays; ``encoder`` ``"small"`` / ``"large"``
    or the local path of a custom body; ``body_file`` the name that body was registered under
    with ``SparkContext.addFile`` (``None`` for base models). ``precision`` is resolved on the
    driver, so every executor encodes the same way whatever its CPU.
    """

    kind: str
    config_json: str
    head: bytes
    encoder: str
    precision: str
    truncate: str = "END"
    body_file: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("few-shot", "custom"):
            raise ValueError(f"kind must be 'few-shot' or 'custom'. But it was: {self.kind!r}")
        if self.precision not in PRECISIONS or self.precision == "auto":
            raise ValueError(f"precision must be resolved (not 'auto') on the driver. But it was: {self.precision!r}")
        check_truncate(self.truncate)

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)

    @property
    def labels(self) -> list[str]:
        return list(self.config["labels"])

    @property
    def key(self) -> str:
        """Identifies the state in a worker's cache (two jobs with the same model share one)."""
        digest = hashlib.sha256()
        for part in (self.kind, self.config_json, self.encoder, self.precision, self.body_file or ""):
            digest.update(part.encode("utf-8") + b"\0")
        digest.update(self.head)
        return digest.hexdigest()


def _safetensors_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    return save_safetensors({k: np.ascontiguousarray(v) for k, v in arrays.items()})


def prepare_model(examples: Iterable[ExampleLike] | None = None, model: str | os.PathLike = "small", *,
                  truncate: str = "END", precision: str = DEFAULT_PRECISION,
                  directory: Path | None = None) -> ShippedModel:
    """Fit (few-shot) or load (custom model) on the driver, once; return the state to ship.

    The classifier comes from ``engine.get_classifier``, exactly as ``classify`` and bulk get
    theirs (same rules, same cache, same messages); ``model`` may also be the path of a saved
    model's folder. Raises the engine's ``ValidationError`` / ``UnknownModelError``.
    """
    truncate = check_truncate(truncate)
    resolved = resolve_precision(precision)
    if examples is None and _is_folder_path(model):
        path = Path(model)
        if not (path / CONFIG_NAME).is_file():
            raise ValidationError(f"{path} is not a saved model folder: {CONFIG_NAME} is missing")
        classifier: FewShotModel | CustomModel = load_folder(path.resolve(), precision=resolved)
    else:
        classifier = get_classifier(examples, str(model), truncate=truncate, precision=resolved, directory=directory)
    head = classifier.head
    # float64 as fitted or loaded (to_arrays would round to float32): the executors compute what the driver would
    arrays = _safetensors_bytes({"coef": head.coef_, "intercept": head.intercept_})
    if isinstance(classifier, FewShotModel):
        return ShippedModel("few-shot", json.dumps(classifier.config), arrays, classifier.model, resolved, truncate)
    body = classifier.folder / BODY_DIR
    return ShippedModel("custom", json.dumps(classifier.config), arrays, str(body), resolved, truncate)


def _is_folder_path(model: str | os.PathLike) -> bool:
    """A model given as a folder path rather than a name: a path object, or a string with a slash naming a folder."""
    text = str(model)
    return isinstance(model, os.PathLike) or (("/" in text or os.sep in text) and Path(text).is_dir())


# ----------------------------------------------------------------------------------------------
# What a Python worker does


_WORKER_LOCK = threading.Lock()
_WORKER_MODELS: dict[str, tuple[CustomModel, str]] = {}
"""Per Python process: the ready model of each shipped state, and where its encoder came from."""
ENCODER_LOADS: dict[str, int] = {}
"""Per Python process and encoder: how often it was loaded from disk (1 when workers reuse it)."""


def _body_path(shipped: ShippedModel) -> Path:
    """The custom body on this executor: its ``addFile`` copy, else the driver's path (local mode)."""
    if shipped.body_file:
        try:
            copy = Path(SparkFiles.get(shipped.body_file))
            if copy.is_dir():
                return copy
        except Exception:  # noqa: BLE001 - no SparkContext files here: fall back to the original path
            pass
    return Path(shipped.encoder)


def worker_model(shipped: ShippedModel) -> tuple[CustomModel, str]:
    """The ready classifier for ``shipped`` in this process, built on the first batch, then reused.

    It is an ``engine.CustomModel`` for both kinds (a few-shot head in a custom model's shape),
    so ``classify`` runs exactly the single-machine code. Returned with its encoder's source.
    """
    key = shipped.key
    with _WORKER_LOCK:
        ready = _WORKER_MODELS.get(key)
        if ready is not None:
            return ready
        source: str | Path = shipped.encoder if shipped.kind == "few-shot" else _body_path(shipped)
        if not is_loaded(source, shipped.precision):
            loaded = f"{source}|{shipped.precision}"
            ENCODER_LOADS[loaded] = ENCODER_LOADS.get(loaded, 0) + 1
        encoder = get_encoder(source, precision=shipped.precision)
        model = CustomModel.from_saved(shipped.config, load_safetensors(shipped.head), encoder)
        _WORKER_MODELS[key] = ready = (model, str(source))
        return ready


def _set_torch_threads() -> None:
    """One task, ``spark.task.cpus`` threads: two workers on two cores must not each take both."""
    import torch  # heavy: only inside a Python worker, which loads it for the encoder anyway

    context = TaskContext.get()
    cpus = int(context.cpus()) if context is not None else 0
    if cpus >= 1 and torch.get_num_threads() != cpus:
        torch.set_num_threads(cpus)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def classify_batch(shipped: ShippedModel, pdf: pd.DataFrame, text_column: str, names: Mapping[str, str],
                   diagnostics: bool = False) -> pd.DataFrame:
    """One Arrow batch: the input columns plus prediction, confidence, confidences, error.

    Null and blank texts, and texts the model refuses (``truncate="NONE"``), get an ``error``
    and nulls; every other row a result. Also usable without Spark, on any pandas frame.
    """
    model, source = worker_model(shipped)
    raw = pdf[text_column].tolist()
    texts = ["" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text) for text in raw]
    results = classify_chunk(model, texts, shipped.truncate)
    predictions, confidences, maps, errors = [], [], [], []
    for original, result in zip(raw, results):
        if isinstance(result, Classification):
            multi = result.classification_type == "multi-label"
            predictions.append(MULTI_LABEL_JOIN.join(result.predictions) if multi else result.prediction)
            confidences.append(result.confidence)
            maps.append(dict(result.labels))
            errors.append(None)
        else:
            predictions.append(None)
            confidences.append(None)
            maps.append(None)
            errors.append(NULL_TEXT if original is None or isinstance(original, float) else result)
    out = pdf.copy()
    out[names[PREDICTION_COLUMN]] = pd.Series(predictions, index=pdf.index, dtype=object)
    out[names[CONFIDENCE_COLUMN]] = pd.Series(confidences, index=pdf.index, dtype="float64")
    out[names[CONFIDENCES_COLUMN]] = pd.Series(maps, index=pdf.index, dtype=object)
    out[names[ERROR_COLUMN]] = pd.Series(errors, index=pdf.index, dtype=object)
    if diagnostics:
        out["_worker_pid"] = os.getpid()
        out["_encoder_loads"] = ENCODER_LOADS.get(f"{source}|{shipped.precision}", 0)
        out["_worker_rss_mb"] = _peak_rss_mb()
    return out


def _batches_fn(shipped: ShippedModel, text_column: str, names: dict[str, str], diagnostics: bool):
    """The function ``mapInPandas`` runs; it closes over plain data only (the shipped state, names)."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for key, value in WORKER_ENV.items():
            os.environ.setdefault(key, value)
        _set_torch_threads()
        for pdf in batches:
            yield classify_batch(shipped, pdf, text_column, names, diagnostics)

    return run


# ----------------------------------------------------------------------------------------------
# The transform


def result_names(columns: Iterable[str]) -> dict[str, str]:
    """The added columns' names; one already taken by the input gets ``_1`` (``_2`` …), as in bulk."""
    taken = set(columns)
    return {name: unique_column(name, taken) for name in (PREDICTION_COLUMN, CONFIDENCE_COLUMN, CONFIDENCES_COLUMN,
                                                    ERROR_COLUMN)}


def check_text_column(df: DataFrame, text_column: str) -> None:
    """Fail before any job: the column must exist and hold strings. The message lists the columns."""
    columns = list(df.columns)
    if text_column not in columns:
        raise ValidationError(f"text column {text_column!r} is not in the table; its columns are: "
                              f"{', '.join(repr(c) for c in columns) or '(none)'}. Pass --text-column with one of them")
    field = df.schema[text_column]
    if not isinstance(field.dataType, StringType):
        raise ValidationError(f"text column {text_column!r} holds {field.dataType.simpleString()}, not strings: "
                              f"cast it first, e.g. df.withColumn({text_column!r}, df[{text_column!r}].cast('string'))")


def _ship_body(spark: SparkSession, shipped: ShippedModel) -> ShippedModel:
    """Register a custom body with ``addFile`` so executors on other machines get a copy.

    Every body folder is called ``body`` and Spark registers a folder under its own name, so it
    goes through a uniquely named twin (model name + a hash of its path), made of hard links
    where the file system allows (no second copy of the weights), else copied once.
    """
    if shipped.kind != "custom" or shipped.body_file:
        return shipped
    body = Path(shipped.encoder)
    name = f"{body.parent.name}-{hashlib.sha256(str(body).encode()).hexdigest()[:12]}"
    with _WORKER_LOCK:
        registered = _REGISTERED.setdefault(id(spark.sparkContext), set())
        if name not in registered:
            staging = Path(tempfile.mkdtemp(prefix="classify-spark-"))
            atexit.register(shutil.rmtree, staging, True)
            try:
                shutil.copytree(body, staging / name, copy_function=os.link)
            except OSError:  # another file system: a real copy
                shutil.rmtree(staging / name, ignore_errors=True)
                shutil.copytree(body, staging / name)
            spark.sparkContext.addFile(str(staging / name), recursive=True)
            registered.add(name)
    return ShippedModel(shipped.kind, shipped.config_json, shipped.head, shipped.encoder, shipped.precision,
                        shipped.truncate, body_file=name)


_REGISTERED: dict[int, set[str]] = {}


def classify_dataframe(df: DataFrame, text_column: str = "text", *, examples: Iterable[ExampleLike] | None = None,
                       model: str | os.PathLike = "small", truncate: str = "END", precision: str = DEFAULT_PRECISION,
                       directory: Path | None = None, shipped: ShippedModel | None = None,
                       diagnostics: bool = False) -> DataFrame:
    """``df`` with ``prediction``, ``confidence``, ``confidences`` (label → confidence) and ``error`` added.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Any columns; ``text_column`` must be a string column. Other columns pass through.
    examples : iterable of Example, (text, label) or {"text", "label"}, optional
        Few-shot examples, fitted once on the driver on ``model`` (``"small"`` / ``"large"``).
        Leave out to use a saved custom model: ``model`` is then its name or folder path.
    truncate, precision
        As in ``classify`` (``precision`` is resolved on the driver, then fixed for every
        executor). Spark's Arrow batch (``spark.sql.execution.arrow.maxRecordsPerBatch``,
        default 10,000) is how many rows a worker takes at a time; the encoder batches 64.
    shipped : ShippedModel, optional
        A state from ``prepare_model`` (to fit once and classify several tables).
    diagnostics : bool, default=False
        Add ``_worker_pid``, ``_encoder_loads`` (times this model's encoder was loaded in that
        worker so far) and ``_worker_rss_mb`` (the worker's peak RSS): evidence of reuse, memory.

    Lazy, like any transform: nothing runs until the result is written or collected.
    """
    check_text_column(df, text_column)
    if shipped is None:
        shipped = prepare_model(examples, model, truncate=truncate, precision=precision, directory=directory)
    shipped = _ship_body(df.sparkSession, shipped)
    names = result_names(df.columns)
    fields = list(df.schema.fields) + [
        StructField(names[PREDICTION_COLUMN], StringType(), True),
        StructField(names[CONFIDENCE_COLUMN], DoubleType(), True),
        StructField(names[CONFIDENCES_COLUMN], MapType(StringType(), DoubleType(), False), True),
        StructField(names[ERROR_COLUMN], StringType(), True),
    ]
    if diagnostics:
        fields += [StructField("_worker_pid", IntegerType(), False), StructField("_encoder_loads", IntegerType(), False),
                   StructField("_worker_rss_mb", DoubleType(), False)]
    return df.mapInPandas(_batches_fn(shipped, text_column, names, diagnostics), StructType(fields))


# ----------------------------------------------------------------------------------------------
# Sessions, files, the CLI's job


def session(master: str = DEFAULT_MASTER, *, app_name: str = "classify-playground", ui: bool = True,
            conf: Mapping[str, str] | None = None) -> SparkSession:
    """A SparkSession set up for this project: the venv's Python, offline models, 127.0.0.1 in local mode.

    In local mode the workers also get this checkout on their ``PYTHONPATH`` (so ``playground``
    imports there without being installed). On a cluster, ship the project as a wheel or
    ``--py-files`` instead (docs/SCALE.md). ``local[2,4]`` means 2 cores, 4 attempts per task.
    """
    builder = SparkSession.builder.master(master).appName(app_name)
    python = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # pyspark reads the worker's Python here
    settings = {
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": sys.executable,
        "spark.ui.enabled": "true" if ui else "false",
        "spark.ui.showConsoleProgress": "true",
        "spark.python.worker.reuse": "true",
        "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "1",
        **{f"spark.executorEnv.{k}": os.environ.get(k, v) for k, v in WORKER_ENV.items()},
    }
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the JVM reads it: the UI binds 127.0.0.1, not 0.0.0.0
        root = str(Path(__file__).resolve().parent.parent)
        paths = [root, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
        settings.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                         "spark.executorEnv.PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))})
        for key in ("CLASSIFY_MODELS_DIR", "CLASSIFY_CACHE_DIR"):
            if key in os.environ:
                settings[f"spark.executorEnv.{key}"] = os.environ[key]
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def read_table(spark: SparkSession, path: str | os.PathLike) -> DataFrame:
    """Parquet (a file or a folder of them) or CSV with a header row (quoted newlines allowed)."""
    path = str(path)
    if path.lower().endswith(".csv"):
        if "://" not in path and not Path(path).exists():
            raise ValidationError(f"input file not found: {path}")
        return (spark.read.option("header", True).option("multiLine", True).option("escape", '"')
                .option("encoding", "UTF-8").csv(path))
    if path.lower().endswith(".parquet") or Path(path).is_dir():
        if "://" not in path and not Path(path).exists():
            raise ValidationError(f"input file not found: {path}")
        return spark.read.parquet(path)
    raise ValidationError(f"input {path!r} is neither .parquet nor .csv: give a Parquet file/folder or a CSV file")


@dataclass(frozen=True)
class SparkJobResult:
    """What ``classify_table`` wrote: where, how many rows, how many with an error, how long."""

    output: str
    rows: int
    errors: int
    labels: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "rows": self.rows, "errors": self.errors, "labels": list(self.labels),
                "seconds": self.seconds}


def classify_table(spark: SparkSession, source: str | os.PathLike, output: str | os.PathLike, *,
                   text_column: str = "text", examples: Iterable[ExampleLike] | None = None,
                   model: str | os.PathLike = "small", truncate: str = "END", precision: str = DEFAULT_PRECISION,
                   partitions: int | None = None) -> SparkJobResult:
    """Read, classify, write Parquet through Spark's output committer, then count what was written.

    The committer (FileOutputCommitter, algorithm 1) keeps task output under ``_temporary`` and
    moves it into ``output`` only when the whole job succeeds: a killed or failed job leaves no
    part file under the final path, and a retried task's output is written once.
    """
    started = time.perf_counter()
    output = str(output)
    if "://" not in output and Path(output).exists():
        raise ValidationError(f"output {output} already exists: delete it or choose another path")
    df = read_table(spark, source)
    check_text_column(df, text_column)  # before fitting anything: a typo costs nothing
    if partitions:
        df = df.repartition(int(partitions))
    shipped = prepare_model(examples, model, truncate=truncate, precision=precision)
    result = classify_dataframe(df, text_column, shipped=shipped)
    spark.sparkContext.setJobDescription(f"classify {source} -> {output}")
    result.write.mode("errorifexists").parquet(output)
    written = spark.read.parquet(output)
    error_name = result_names(df.columns)[ERROR_COLUMN]
    rows = written.count()
    errors = written.where(written[error_name].isNotNull()).count()
    return SparkJobResult(output, rows, errors, tuple(shipped.labels), time.perf_counter() - started)
