"""Command line: ``python -m playground classify | train | models | serve | spark-classify``.

Each command parses its arguments and calls one function of the core with them as arguments;
all terminal output (progress lines, tables, JSON) is written here, never by the core. Errors
print one clear line to stderr and exit with status 2, never a traceback.

Only the server (FastAPI, uvicorn) and Spark (pyspark) are imported inside their commands:
they are heavy and optional, and no other command needs them. Torch loads with the first model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from .active import DEFAULT_BATCH, STRATEGIES
from .bulk import BulkProgress, classify_file, format_eta
from .data import read_examples_csv
from .embeddings import DEFAULT_PRECISION, PRECISIONS
from .explain import Explanation, classify
from .label_next import (
    DEFAULT_TARGET_PRECISION,
    REVIEW_ROWS,
    LabelPool,
    PoolProgress,
    choose_threshold,
    read_pool,
    review_csv,
    review_queue,
)
from .metrics import headline_keys, scored_on
from .store import TrainingBusyError, list_models
from .training import TrainingCancelled, TrainingProgress, TrainingSettings, train
from .validation import TRUNCATE_OPTIONS, ValidationError


def _print_json(data) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def _precision(args: argparse.Namespace) -> str:
    """``--precision`` when given, else the default (``auto``: ``$CLASSIFY_PRECISION``, else by CPU)."""
    return getattr(args, "precision", None) or DEFAULT_PRECISION


def _unknown_below(args: argparse.Namespace, examples) -> float | None:
    """``--unknown-below``: a number, or ``auto`` (chosen on the examples for ``--target-precision``)."""
    value = getattr(args, "unknown_below", None)
    if value is None:
        return None
    if value.strip().lower() == "auto":
        if examples is None:
            raise ValidationError("--unknown-below auto chooses the threshold on your examples: give --examples, "
                                  "or a number such as --unknown-below 0.6")
        choice = choose_threshold(examples, args.model, target_precision=args.target_precision,
                                  precision=_precision(args), truncate=args.truncate)
        print(choice.summary, file=sys.stderr)
        return choice.threshold
    try:
        return float(value)
    except ValueError:
        raise ValidationError(f"--unknown-below must be a confidence from 0 to 1 or auto. But it was: {value!r}") from None


def cmd_classify(args: argparse.Namespace) -> int:
    if args.input_file or args.output:
        return _classify_file(args)
    texts = list(args.texts)
    if not texts and not sys.stdin.isatty():
        texts = [line.strip() for line in sys.stdin if line.strip()]
    examples = read_examples_csv(args.examples).examples if args.examples else None
    results = classify(texts, examples, args.model, truncate=args.truncate, precision=_precision(args),
                       max_inputs=None, unknown_below=_unknown_below(args, examples), explain=args.explain)
    if args.explain:
        for result in results:
            print(format_explanation(result.input, result.explanation), file=sys.stderr)
    _print_json([r.to_dict() for r in results])
    return 0


def format_explanation(text: str, explanation: Explanation, *, top: int = 5) -> str:
    """An answer's strongest words (+ toward the label, - away) and nearest examples, for a terminal."""
    lines = [f"why {explanation.label!r}: {text[:60]}{'…' if len(text) > 60 else ''}"]
    ranked = sorted(explanation.words, key=lambda w: -abs(w.weight))[:top]
    lines += [f"  {w.weight:+7.3f}  {w.word}" for w in ranked]
    lines += [f"  nearest: {n.similarity:.2f} [{n.label}] {n.text[:60]}" for n in explanation.nearest]
    if explanation.note:
        lines.append(f"  note: {explanation.note}")
    return "\n".join(lines)


def _classify_file(args: argparse.Namespace) -> int:
    """Bulk mode: stream a CSV through the model into --output, progress on stderr."""
    if not (args.input_file and args.output):
        raise ValidationError("bulk mode needs both --input-file texts.csv and --output results.csv")
    if args.texts:
        raise ValidationError("give texts either as arguments or with --input-file, not both")
    if args.explain:
        raise ValidationError("--explain explains texts given as arguments or on stdin; leave it out of bulk mode "
                              "(--input-file / --output)")
    examples = read_examples_csv(args.examples).examples if args.examples else None

    def show(p: BulkProgress) -> None:
        windows = f" · {p.windows_done:,} windows" if p.windows_done else ""
        print(f"\r{p.rows_done:,}/{p.total:,} rows{windows} · {p.rate:,.0f} rows/s · ETA {format_eta(p.seconds_left)}   ",
              end="", file=sys.stderr, flush=True)

    result = classify_file(args.input_file, args.output, examples=examples, model=args.model,
                           text_column=args.text_column, truncate=args.truncate, precision=_precision(args),
                           unknown_below=_unknown_below(args, examples), progress=show)
    print(f"\n{result.rows:,} rows classified in {result.seconds:.1f}s ({result.errors:,} with an error) "
          f"→ {result.output}", file=sys.stderr)
    if result.long_note:
        print(result.long_note, file=sys.stderr)
    return 0


def format_metrics(metrics: dict) -> str:
    """The trained-vs-baseline table of a model's metrics, for a terminal."""
    trained, baseline = metrics.get("trained", {}), metrics.get("baseline", {})
    keys = headline_keys(trained)
    if metrics.get("validation", {}).get("source") == "none":
        return f"scores: {scored_on(metrics)}"
    where = scored_on(metrics)
    lines = [f"scores {where}:", f"  {'metric':<16}{'trained':>10}{'few-shot':>10}"]
    lines += [f"  {k:<16}{trained.get(k, float('nan')):>10.3f}{baseline.get(k, float('nan')):>10.3f}" for k in keys]
    lines.append(f"  {'label':<16}{'F1 trained':>12}{'F1 few-shot':>13}{'support':>9}")
    for label, row in trained.get("per_label", {}).items():
        b = baseline.get("per_label", {}).get(label, {})
        lines.append(f"  {label[:15]:<16}{row['f1']:>12.3f}{b.get('f1', float('nan')):>13.3f}{row['support']:>9}")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    """``train FILE --name NAME [--multi-label] …``: progress on stderr, the model's info as JSON on stdout."""
    overrides = {key: getattr(args, key) for key in ("time_budget_s", "steps", "use_label_names", "cv_folds", "keep",
                                                    "long_texts")
                 if getattr(args, key, None) is not None}
    try:
        settings = TrainingSettings(**overrides)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    tty = sys.stderr.isatty()
    last = {"shown": -1.0, "phase": ""}
    try:  # our own progress line replaces the libraries' bars (transformers is heavy: only when training)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is pinned
        pass

    def show(p: TrainingProgress) -> None:
        left = f" · ~{p.seconds_left:.0f}s left" if p.seconds_left is not None else ""
        line = f"[{p.phase}] {p.elapsed:.0f}s{left} · {p.message}"
        if tty:
            sys.stderr.write("\r\033[K" + line)
            if p.phase == "done":
                sys.stderr.write("\n")
        elif p.phase not in ("tuning", "cross-validating") or p.phase != last["phase"] \
                or time.monotonic() - last["shown"] > 5:  # each phase's first line, then one per 5 s
            sys.stderr.write(line + "\n")
            last["shown"] = time.monotonic()
        last["phase"] = p.phase
        sys.stderr.flush()

    try:
        info = train(args.data, args.name, base_model=args.base, multi_label=True if args.multi_label else None,
                     validation=args.validation, settings=settings, progress=show)
    except (TrainingBusyError, TrainingCancelled) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(format_metrics(info.metrics), file=sys.stderr)
    guard = info.metrics.get("guard") or {}
    if guard.get("message"):
        print(guard["message"] + (" (Train again with --keep tuned to keep the tuned one.)"
                                  if guard.get("choice") in ("untuned", "blended") else ""), file=sys.stderr)
    _print_json(info.to_dict())
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    """``suggest --examples ex.csv --pool texts.csv``: the next batch to label as JSON, progress on stderr."""
    examples = read_examples_csv(args.examples).examples

    def show(p: PoolProgress) -> None:
        print(f"\r{p.phase} {p.done:,}/{p.total:,} · ETA {format_eta(p.seconds_left)}   ", end="", file=sys.stderr,
              flush=True)

    pool_file = read_pool(args.pool, text_column=args.text_column, progress=show)
    print(pool_file.summary, file=sys.stderr)
    pool = LabelPool(pool_file.texts, args.model, precision=_precision(args), truncate=args.truncate, progress=show)
    print(file=sys.stderr)
    batch = pool.suggest(examples, k=args.k, strategy=args.strategy, seed=args.seed)
    _print_json([s.to_dict() for s in batch])
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """``review results.csv``: a bulk output's least sure rows first (CSV with --output, else JSON)."""
    queue = review_queue(args.results, top=args.top, text_column=args.text_column)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            f.write(review_csv(queue))
        print(f"{len(queue)} rows to review → {args.output}: correct the label column, then load the file as "
              "examples (it reads as text,label)", file=sys.stderr)
    else:
        _print_json([r.to_dict() for r in queue])
    return 0


def cmd_models(args: argparse.Namespace) -> int:

    _print_json([info.to_dict() for info in list_models()])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve  # FastAPI and uvicorn: only this command needs them

    serve(host=args.host, port=args.port, precision=_precision(args))
    return 0


def cmd_spark_classify(args: argparse.Namespace) -> int:
    """Classify a Parquet/CSV table on Spark (optional: needs pyspark and Java 17+)."""
    try:  # pyspark is optional: its absence is a message, not a traceback
        from pyspark.errors import PySparkException
        from pyspark.sql import SparkSession

        from .spark import classify_table, session
    except ImportError as exc:
        print(f"error: spark-classify needs pyspark, which is not installed ({exc}). "
              "Install it with: pip install -r requirements-spark.txt (Spark 4 also needs Java 17+, "
              "e.g. apt-get install openjdk-17-jre-headless)", file=sys.stderr)
        return 2
    examples = read_examples_csv(args.examples).examples if args.examples else None
    started_here = SparkSession.getActiveSession() is None
    spark = session(args.master)
    try:
        spark.sparkContext.setLogLevel("ERROR")
        url = spark.sparkContext.uiWebUrl
        where = f"the Spark UI at {url} (jobs, stages, tasks)" if url else "Spark's UI (disabled in this session)"
        print(f"Spark {spark.version} on {spark.sparkContext.master}: progress in {where} "
              "and in the stage bar below", file=sys.stderr)
        result = classify_table(spark, args.input, args.output, text_column=args.text_column, examples=examples,
                                model=args.model, truncate=args.truncate, precision=_precision(args),
                                partitions=args.partitions)
    except PySparkException as exc:
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        if started_here:
            spark.stop()
    print(f"\n{result.rows:,} rows classified in {result.seconds:.1f}s ({result.errors:,} with an error) "
          f"→ {result.output}", file=sys.stderr)
    _print_json(result.to_dict())
    return 0


TRUNCATE_HELP = ("texts over the model's window: END keeps the start (default, as Cohere), START the end, NONE refuses; "
                 "WINDOWS reads all of it in windows (at most $CLASSIFY_MAX_WINDOWS, default 16)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m playground", description="Classify Playground from the shell.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify texts with examples or a custom model (JSON out)")
    p.add_argument("texts", nargs="*", help="texts to classify (or one per line on stdin)")
    p.add_argument("--examples", help="CSV of text,label examples (few-shot on --model small|large)")
    p.add_argument("--model", default="small", help="small, large or a custom model name (default: small)")
    p.add_argument("--truncate", default="END", choices=list(TRUNCATE_OPTIONS), help=TRUNCATE_HELP)
    p.add_argument("--input-file", help="CSV with a header row to classify in bulk (needs --output)")
    p.add_argument("--text-column", help="column of --input-file to classify (default: text, else the first)")
    p.add_argument("--output", help="CSV to write: the input's columns + prediction, confidence, "
                   "confidence_<label>, error")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="encoder precision (default: $CLASSIFY_PRECISION or auto = bf16 where the CPU has it)")
    p.add_argument("--unknown-below", default=None, metavar="CONFIDENCE|auto",
                   help="opt-in: answer 'unknown' below this confidence; auto chooses it on --examples "
                        "(held out in turn) for --target-precision and prints what it costs in coverage")
    p.add_argument("--target-precision", type=float, default=DEFAULT_TARGET_PRECISION,
                   help=f"precision --unknown-below auto aims for (default {DEFAULT_TARGET_PRECISION})")
    p.add_argument("--explain", action="store_true",
                   help="say why: each answer's strongest words and nearest examples on stderr, and an "
                        "explanation in the JSON (costs a few times a plain answer)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("suggest", help="which texts of an unlabelled pool to label next (JSON out)")
    p.add_argument("--examples", required=True, help="CSV of text,label examples labelled so far")
    p.add_argument("--pool", required=True, help="unlabelled texts: CSV with a header row (text column, else the "
                   "first) or a .txt file with one text per line; up to 100,000")
    p.add_argument("--text-column", help="column of --pool to use (default: text, else the first)")
    p.add_argument("--k", type=int, default=DEFAULT_BATCH, help=f"batch size (default {DEFAULT_BATCH})")
    p.add_argument("--strategy", choices=STRATEGIES, default=STRATEGIES[0],
                   help="uncertainty+diversity (default), uncertainty, random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="small", choices=["small", "large"])
    p.add_argument("--truncate", default="END", choices=list(TRUNCATE_OPTIONS), help=TRUNCATE_HELP)
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="encoder precision (default: auto)")
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("review", help="the rows of a bulk output the model is least sure of, first")
    p.add_argument("results", help="a CSV written by classify --output (or the Bulk page)")
    p.add_argument("--top", type=int, default=REVIEW_ROWS, help=f"rows to list (default {REVIEW_ROWS})")
    p.add_argument("--text-column", help="the text column (default: text, else the first)")
    p.add_argument("--output", help="write row,text,prediction,confidence,label CSV here (else JSON on stdout); "
                   "correct the label column and load it as examples")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("train", help="train a custom model from a CSV (single-label) or JSONL (multi-label) file")
    p.add_argument("data", help="training file: .csv text,label or .jsonl {\"text\", \"label\": [...]}")
    p.add_argument("--name", required=True, help="model name: letters, digits, - and _")
    p.add_argument("--multi-label", action="store_true", help="the file is multi-label JSONL")
    p.add_argument("--base", default="small", choices=["small", "large"], help="base model (default: small)")
    p.add_argument("--validation", help="optional validation file to score on (else cross-validation)")
    p.add_argument("--steps", type=int, default=None,
                   help="tuning steps (default: the recipe's 40); fixed before tuning, so a run repeats exactly")
    p.add_argument("--time-budget", dest="time_budget_s", type=float, default=None,
                   help="optional cap in seconds: stop tuning early if the steps would not fit (the result then "
                        "follows the machine's speed; default: no cap)")
    p.add_argument("--keep", choices=["best", "tuned"], default=None,
                   help="best (default): keep the untuned model when the honest scores say tuning made it worse, "
                        "a blend of the two when they tie; tuned: keep the tuned one anyway")
    p.add_argument("--label-names", dest="use_label_names", choices=["auto", "always", "never"], default=None,
                   help="use the label names as extra examples (default auto: when cross-validation says they help)")
    p.add_argument("--cv-folds", type=int, default=None,
                   help="folds for the honest scores, each tuned without its fold "
                        f"(default {TrainingSettings.cv_folds}; 0 = no scores)")
    p.add_argument("--long-texts", choices=["END", "WINDOWS"], default=None,
                   help="examples over the window: END (default) cuts them; WINDOWS reads all of them, in windows, "
                        "for the head and the scores (the encoder tunes on their start either way; classify such a "
                        "model with --truncate WINDOWS)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="list saved custom models (JSON out)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("serve", help="start the Cohere-compatible HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="encoder precision (default: $CLASSIFY_PRECISION or auto = bf16 where the CPU has it)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("spark-classify", help="classify a Parquet or CSV table on Apache Spark (pyspark needed)")
    p.add_argument("--input", required=True, help="texts.parquet (file or folder) or texts.csv with a header row")
    p.add_argument("--text-column", default="text", help="column to classify (default: text)")
    p.add_argument("--examples", help="CSV of text,label examples (few-shot on --model small|large)")
    p.add_argument("--model", default="small", help="small, large, or a custom model's name or folder (default: small)")
    p.add_argument("--output", required=True, help="Parquet folder to write: the input's columns + prediction, "
                   "confidence, confidences (label -> confidence), error")
    p.add_argument("--master", default="local[2]", help="Spark master (default: local[2]; e.g. yarn, spark://host:7077)")
    p.add_argument("--partitions", type=int, default=None, help="repartition the input into N tasks first")
    p.add_argument("--truncate", default="END", choices=list(TRUNCATE_OPTIONS), help=TRUNCATE_HELP)
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="encoder precision (default: $CLASSIFY_PRECISION or auto = bf16 where the driver's CPU has it)")
    p.set_defaults(func=cmd_spark_classify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValidationError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
