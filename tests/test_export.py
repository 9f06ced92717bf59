import ast
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from playground import classify
from playground.data import read_examples_csv
from playground.export import all_snippets, curl_snippet, python_snippet, request_body
from playground.validation import Example

ROOT = Path(__file__).resolve().parent.parent
AWKWARD = [
    Example('He said "it\'s fine"', "quote's"),
    Example("back\\slash and '''triple''' and \"\"\"double\"\"\"", "tricky"),
    Example("line one\nline two", "quote's"),
    Example("naïve café ☃ 日本語 $(rm -rf /) ${HOME} `id`", "tricky"),
]
INPUTS = ["émoji 🎉 and \"quotes\"", "tab\there"]


@pytest.mark.parametrize("key", ["python", "cohere"])
def test_python_snippets_compile_and_hold_the_strings_verbatim(key):
    code = all_snippets(INPUTS, AWKWARD)[key]
    tree = ast.parse(code)
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    for ex in AWKWARD:
        assert ex.text in strings and ex.label in strings
    assert set(INPUTS) <= strings


def test_json_body_round_trips():
    body = json.loads(all_snippets(INPUTS, AWKWARD, model="large", truncate="START")["json"])
    assert body == {"model": "large", "inputs": INPUTS, "truncate": "START",
                    "examples": [ex.to_dict() for ex in AWKWARD]}


def test_curl_data_is_one_shell_word_equal_to_the_body():
    words = shlex.split(curl_snippet(INPUTS, AWKWARD, server_url="http://127.0.0.1:9999"))
    assert "http://127.0.0.1:9999/v1/classify" in words
    assert json.loads(words[words.index("--data-binary") + 1]) == request_body(INPUTS, AWKWARD)


def test_csv_export_reads_back_to_the_examples():
    assert read_examples_csv(all_snippets(INPUTS, AWKWARD)["csv"].encode()).examples == AWKWARD


def test_custom_model_snippets_have_no_examples():
    snippets = all_snippets(["x"], None, model="topics")
    assert "examples" not in snippets["python"] and "Example" not in snippets["cohere"]
    assert json.loads(snippets["json"]) == {"model": "topics", "inputs": ["x"]}


def test_many_inputs_lift_the_limit():
    assert "max_inputs=None" in python_snippet(["x"] * 97, AWKWARD)


def test_package_snippet_runs_and_matches_the_engine(seed, tmp_path):
    inputs, examples = list(seed.inputs), list(seed.examples)
    snippet = python_snippet(inputs, examples)
    script = tmp_path / "snippet.py"
    script.write_text(snippet, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    expected = [f"{r.prediction} ({r.confidence:.0%}): {r.input}" for r in classify(inputs, examples)]
    assert run.stdout.splitlines() == expected


def test_unknown_below_is_exported_only_when_on():
    plain, marked = all_snippets(INPUTS, AWKWARD), all_snippets(INPUTS, AWKWARD, unknown_below=0.62)
    assert "unknown" not in plain["python"] + plain["json"] + plain["cohere"]
    assert json.loads(marked["json"])["unknown_below"] == 0.62
    assert "unknown_below=0.62" in marked["python"]
    words = shlex.split(marked["curl"])
    assert json.loads(words[words.index("--data-binary") + 1])["unknown_below"] == 0.62
    ast.parse(marked["cohere"])  # Cohere's SDK cannot send it: the same rule is applied to its answer
    assert "c.confidence >= 0.62 else 'unknown'" in marked["cohere"]


def test_windows_is_exported_in_every_request_and_said_to_be_local_in_the_cohere_one():
    snippets = all_snippets(INPUTS, AWKWARD, truncate="WINDOWS")
    assert json.loads(snippets["json"])["truncate"] == "WINDOWS"
    assert "truncate='WINDOWS'" in snippets["python"] and "truncate='WINDOWS'" in snippets["cohere"]
    words = shlex.split(snippets["curl"])
    assert json.loads(words[words.index("--data-binary") + 1])["truncate"] == "WINDOWS"
    ast.parse(snippets["cohere"])
    assert "this local server only" in snippets["cohere"]
    assert "WINDOWS" not in all_snippets(INPUTS, AWKWARD)["cohere"]
