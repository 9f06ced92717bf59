"""Command line: ``python -m playground classify | train | models | serve``.

Each command parses its arguments and calls one function of the core; errors print one clear
line to stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .validation import ValidationError


def _print_json(data) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def cmd_classify(args: argparse.Namespace) -> int:
    from .data import read_examples_csv
    from .engine import classify

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m playground", description="Classify Playground from the shell.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify texts with examples or a custom model (JSON out)")
    p.add_argument("texts", nargs="*", help="texts to classify (or one per line on stdin)")
    p.add_argument("--examples", help="CSV of text,label examples (few-shot on --model small|large)")
    p.add_argument("--model", default="small", help="small, large or a custom model name (default: small)")
    p.add_argument("--truncate", default="END", choices=["END", "START", "NONE"])
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
    p.set_defaults(func=cmd_serve)
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
