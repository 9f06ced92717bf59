"""Command line: ``python -m playground classify | train | models | serve``.

Each command parses its arguments and calls one function of the core; errors print one clear
line to stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .embeddings import PRECISIONS
from .validation import ValidationError


def _print_json(data) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def cmd_classify(args: argparse.Namespace) -> int:
    from .data import read_examples_csv
    from .engine import classify

    if args.input_file or args.output:
        return _classify_file(args)
    texts = list(args.texts)
    if not texts and not sys.stdin.isatty():
        texts = [line.strip() for line in sys.stdin if line.strip()]
    if args.examples:
        examples = read_examples_csv(args.examples).examples
        results = classify(texts, examples, args.model, truncate=args.truncate, max_inputs=None)
    else:
        results = classify(texts, None, args.model, truncate=args.truncate, max_inputs=None)
    _print_json([r.to_dict() for r in results])
    return 0


def _classify_file(args: argparse.Namespace) -> int:
    """Bulk mode: stream a CSV through the model into --output, progress on stderr."""
    from .bulk import BulkProgress, classify_file, format_eta
    from .data import read_examples_csv

    if not (args.input_file and args.output):
        raise ValidationError("bulk mode needs both --input-file texts.csv and --output results.csv")
    if args.texts:
        raise ValidationError("give texts either as arguments or with --input-file, not both")
    examples = read_examples_csv(args.examples).examples if args.examples else None

    def show(p: BulkProgress) -> None:
        print(f"\r{p.rows_done:,}/{p.total:,} rows · {p.rate:,.0f} rows/s · ETA {format_eta(p.seconds_left)}   ",
              end="", file=sys.stderr, flush=True)

    result = classify_file(args.input_file, args.output, examples=examples, model=args.model,
                           text_column=args.text_column, truncate=args.truncate, progress=show)
    print(f"\n{result.rows:,} rows classified in {result.seconds:.1f}s ({result.errors:,} with an error) "
          f"→ {result.output}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import run_training_cli

    return run_training_cli(args)


def cmd_models(args: argparse.Namespace) -> int:
    from .store import list_models

    _print_json([info.to_dict() for info in list_models()])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(host=args.host, port=args.port)
    return 0


def cmd_spark_classify(args: argparse.Namespace) -> int:
    """Classify a Parquet/CSV table on Spark (optional: needs pyspark and Java 17+)."""
    try:
        from pyspark.errors import PySparkException
        from pyspark.sql import SparkSession

        from . import spark as spark_jobs
    except ImportError as exc:
        print(f"error: spark-classify needs pyspark, which is not installed ({exc}). "
              "Install it with: pip install -r requirements-spark.txt (Spark 4 also needs Java 17+, "
              "e.g. apt-get install openjdk-17-jre-headless)", file=sys.stderr)
        return 2
    from .data import read_examples_csv

    examples = read_examples_csv(args.examples).examples if args.examples else None
    started_here = SparkSession.getActiveSession() is None
    spark = spark_jobs.session(args.master)
    try:
        spark.sparkContext.setLogLevel("ERROR")
        url = spark.sparkContext.uiWebUrl
        where = f"the Spark UI at {url} (jobs, stages, tasks)" if url else "Spark's UI (disabled in this session)"
        print(f"Spark {spark.version} on {spark.sparkContext.master}: progress in {where} "
              "and in the stage bar below", file=sys.stderr)
        result = spark_jobs.classify_table(spark, args.input, args.output, text_column=args.text_column,
                                           examples=examples, model=args.model, truncate=args.truncate,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m playground", description="Classify Playground from the shell.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify texts with examples or a custom model (JSON out)")
    p.add_argument("texts", nargs="*", help="texts to classify (or one per line on stdin)")
    p.add_argument("--examples", help="CSV of text,label examples (few-shot on --model small|large)")
    p.add_argument("--model", default="small", help="small, large or a custom model name (default: small)")
    p.add_argument("--truncate", default="END", choices=["END", "START", "NONE"])
    p.add_argument("--input-file", help="CSV with a header row to classify in bulk (needs --output)")
    p.add_argument("--text-column", help="column of --input-file to classify (default: text, else the first)")
    p.add_argument("--output", help="CSV to write: the input's columns + prediction, confidence, "
                   "confidence_<label>, error")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="encoder precision (default: $CLASSIFY_PRECISION or auto = bf16 where the CPU has it)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("train", help="train a custom model from a CSV (single-label) or JSONL (multi-label) file")
    p.add_argument("data", help="training file: .csv text,label or .jsonl {\"text\", \"label\": [...]}")
    p.add_argument("--name", required=True, help="model name: letters, digits, - and _")
    p.add_argument("--multi-label", action="store_true", help="the file is multi-label JSONL")
    p.add_argument("--base", default="small", choices=["small", "large"], help="base model (default: small)")
    p.add_argument("--validation", help="optional validation file (else a stratified 20%% split)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-pairs", type=int, default=None, help="cap on contrastive pairs")
    p.add_argument("--batch-size", type=int, default=None)
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
    p.add_argument("--truncate", default="END", choices=["END", "START", "NONE"])
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="encoder precision (default: $CLASSIFY_PRECISION or auto = bf16 where the driver's CPU has it)")
    p.set_defaults(func=cmd_spark_classify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "precision", None):
        from .embeddings import PRECISION_ENV

        os.environ[PRECISION_ENV] = args.precision  # read by resolve_precision("auto") everywhere
    try:
        return args.func(args)
    except (ValidationError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
