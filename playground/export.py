"""Code that reproduces the playground's configuration: Python, JSON + curl, Cohere SDK, CSV.

Every string goes through a real serialiser (``repr`` for Python, ``json.dumps`` for JSON,
``shlex.quote`` for the shell), so quotes, backslashes, newlines, ``$(...)`` and non-ASCII
text come out verbatim and inert.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence

from .data import examples_to_csv
from .embeddings import BASE_MODELS
from .validation import MAX_INPUTS, Example

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"


def _py_list(items: Sequence[str], indent: str = "    ") -> str:
    if not items:
        return "[]"
    return "[\n" + "".join(f"{indent}{item},\n" for item in items) + "]"


def request_body(inputs: Sequence[str], examples: Sequence[Example] | None, model: str = "small",
                 truncate: str = "END", label_names: bool = False, *,
                 descriptions: Mapping[str, str] | None = None, unknown_below: float | None = None) -> dict:
    """The ``/v1/classify`` request (Cohere's v1 shape, plus ``label_names`` and ``descriptions`` when the
    label-name hint is on, ``unknown_below`` when set) for this configuration."""
    body: dict = {"model": model, "inputs": list(inputs)}
    if examples and model in BASE_MODELS:
        body["examples"] = [ex.to_dict() for ex in examples]
        if label_names:
            body["label_names"] = True
            if descriptions:
                body["descriptions"] = dict(descriptions)
    if truncate != "END":
        body["truncate"] = truncate
    if unknown_below is not None:
        body["unknown_below"] = unknown_below
    return body


def python_snippet(inputs: Sequence[str], examples: Sequence[Example] | None, model: str = "small",
                   truncate: str = "END", label_names: bool = False, *,
                   descriptions: Mapping[str, str] | None = None, unknown_below: float | None = None) -> str:
    """Python using this package; run it from the project folder."""
    few_shot = bool(examples) and model in BASE_MODELS
    lines = ["from playground import Example, classify" if few_shot else "from playground import classify", ""]
    if few_shot:
        lines.append("examples = " + _py_list([f"Example({ex.text!r}, {ex.label!r})" for ex in examples]))
    lines.append("inputs = " + _py_list([repr(text) for text in inputs]))
    described = bool(descriptions) and label_names and few_shot
    if described:
        lines.append("descriptions = {\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in descriptions.items()) + "}")
    args = ["inputs", "examples" if few_shot else None, f"model={model!r}",
            f"truncate={truncate!r}" if truncate != "END" else None,
            "max_inputs=None" if len(inputs) > MAX_INPUTS else None,
            "label_names=True" if label_names and few_shot else None,
            "descriptions=descriptions" if described else None,
            f"unknown_below={unknown_below!r}" if unknown_below is not None else None]
    lines += [
        "",
        "# to see why, add explain=True and read result.explanation: .words (each word's weight) and .nearest",
        f"results = classify({', '.join(a for a in args if a)})",
        "for result in results:",
        "    print(f\"{result.prediction} ({result.confidence:.0%}): {result.input}\")",
    ]
    return "\n".join(lines) + "\n"


def json_body(inputs: Sequence[str], examples: Sequence[Example] | None, model: str = "small",
              truncate: str = "END", label_names: bool = False, *,
              descriptions: Mapping[str, str] | None = None, unknown_below: float | None = None) -> str:
    body = request_body(inputs, examples, model, truncate, label_names, descriptions=descriptions,
                        unknown_below=unknown_below)
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def curl_snippet(inputs: Sequence[str], examples: Sequence[Example] | None, model: str = "small",
                 truncate: str = "END", server_url: str = DEFAULT_SERVER_URL, label_names: bool = False, *,
                 descriptions: Mapping[str, str] | None = None, unknown_below: float | None = None) -> str:
    body = json.dumps(request_body(inputs, examples, model, truncate, label_names, descriptions=descriptions,
                                   unknown_below=unknown_below),
                      ensure_ascii=False, indent=2)
    url = server_url.rstrip("/") + "/v1/classify"
    return (
        f"curl -sS -X POST {shlex.quote(url)} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        "  -H \"Authorization: Bearer ${CLASSIFY_API_KEY:-none}\" \\\n"
        f"  --data-binary {shlex.quote(body)}\n"
    )


def cohere_snippet(inputs: Sequence[str], examples: Sequence[Example] | None, model: str = "small",
                   truncate: str = "END", server_url: str = DEFAULT_SERVER_URL, label_names: bool = False, *,
                   unknown_below: float | None = None) -> str:
    """The Cohere SDK call of Cohere's guide, pointed at this project's server (``unknown_below`` applied client-side)."""
    few_shot = bool(examples) and model in BASE_MODELS
    lines = ["import os", "", "import cohere"]
    if truncate == "WINDOWS":
        lines = ["# truncate='WINDOWS' is this project's extension (long texts read whole, in windows): it works against",
                 "# this local server only; Cohere's own API takes END, START or NONE.", ""] + lines
    if label_names and few_shot:
        lines = ["# Cohere's SDK cannot send label_names or descriptions (our extensions): this call classifies without the label-name",
                 "# hint. The Python and JSON exports keep it.", ""] + lines
    if few_shot:
        lines.append("from cohere import ClassifyExample")
    lines += [
        "",
        f"co = cohere.Client(api_key=os.environ.get('CLASSIFY_API_KEY', 'none'), base_url={server_url!r})",
        "",
        "response = co.classify(",
        f"    model={model!r},",
        "    inputs=" + _py_list([repr(t) for t in inputs], indent="        ").replace("\n]", "\n    ]") + ",",
    ]
    if few_shot:
        items = [f"ClassifyExample(text={ex.text!r}, label={ex.label!r})" for ex in examples]
        lines.append("    examples=" + _py_list(items, indent="        ").replace("\n]", "\n    ]") + ",")
    if truncate != "END":
        lines.append(f"    truncate={truncate!r},")
    lines += [")", "for c in response.classifications:"]
    if unknown_below is not None:  # the SDK cannot send our extension: the same rule, applied to its answer
        lines += [f"    prediction = c.prediction if c.confidence >= {unknown_below!r} else 'unknown'",
                  "    print(prediction, round(c.confidence, 3), c.input)"]
    else:
        lines.append("    print(c.prediction, round(c.confidence, 3), c.input)")
    return "\n".join(lines) + "\n"


def csv_export(examples: Sequence[Example], descriptions: Mapping[str, str] | None = None) -> str:
    return examples_to_csv(examples, dict(descriptions) if descriptions else None)


def all_snippets(inputs: Sequence[str], examples: Sequence[Example] | None, model: str = "small",
                 truncate: str = "END", server_url: str = DEFAULT_SERVER_URL, label_names: bool = False, *,
                 descriptions: Mapping[str, str] | None = None, unknown_below: float | None = None) -> dict[str, str]:
    """Every export at once, keyed by tab: ``python``, ``json``, ``curl``, ``cohere``, ``csv``.

    ``descriptions`` ({label: words}) go with the label-name hint in the request exports, and
    always into the CSV's ``description`` column.
    """
    both = {"descriptions": descriptions, "unknown_below": unknown_below}
    return {
        "python": python_snippet(inputs, examples, model, truncate, label_names, **both),
        "json": json_body(inputs, examples, model, truncate, label_names, **both),
        "curl": curl_snippet(inputs, examples, model, truncate, server_url, label_names, **both),
        "cohere": cohere_snippet(inputs, examples, model, truncate, server_url, label_names,
                                 unknown_below=unknown_below),
        "csv": csv_export(examples or [], descriptions),
    }
