"""Property tests (hypothesis) for the parsers and exporters, and schemathesis against the API.

Bounded so the file runs in about a minute: a few hundred generated cases per property, a
fixed number per API operation. Counts and findings are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import shlex

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from playground.data import DataFileError, examples_to_csv, read_examples_csv, read_multilabel_jsonl
from playground.export import all_snippets, curl_snippet, python_snippet, request_body
from playground.server import DEFAULT_MAX_BODY_BYTES, create_app
from playground.validation import Example

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text a user could put in a cell: anything but NUL and lone surrogates (neither can be saved as UTF-8 CSV)
cell_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40)
stripped = cell_text.map(str.strip).filter(bool)
examples_strategy = st.lists(st.builds(Example, stripped, stripped), min_size=1, max_size=12)


@FUZZ
@given(st.binary(max_size=2000))
def test_csv_parser_only_raises_its_own_error_on_any_bytes(raw):
    try:
        parsed = read_examples_csv(raw)
    except DataFileError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return
    assert parsed.examples and all(ex.text.strip() and ex.label.strip() for ex in parsed.examples)
    assert len(parsed.rows) == len(parsed.examples)


csv_like = st.lists(st.lists(st.one_of(cell_text, st.sampled_from(["", " ", '"', '""', "a,b", "x\ny", "\r", "'="])),
                             min_size=0, max_size=4), min_size=0, max_size=8)


@FUZZ
@given(csv_like, st.sampled_from([",", ";", "\t"]))
def test_csv_parser_on_structured_rows(rows, delimiter):
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    try:
        read_examples_csv(buffer.getvalue().encode())
    except DataFileError as exc:
        assert exc.problems


@FUZZ
@given(examples_strategy)
def test_examples_csv_round_trip_is_exact(examples):
    assert read_examples_csv(examples_to_csv(examples).encode()).examples == examples


json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | cell_text,
                          lambda children: st.lists(children, max_size=3) | st.dictionaries(cell_text, children,
                                                                                             max_size=3),
                          max_leaves=8)
jsonl_record = st.one_of(
    json_value,
    st.fixed_dictionaries({"text": st.one_of(cell_text, json_value)},
                          optional={"label": st.one_of(cell_text, st.lists(cell_text, max_size=3), json_value)}),
)


@FUZZ
@given(st.lists(st.one_of(jsonl_record.map(json.dumps), st.text(max_size=30)), min_size=0, max_size=6))
def test_jsonl_parser_only_raises_its_own_error(lines):
    try:
        out = read_multilabel_jsonl("\n".join(lines).encode("utf-8", "surrogatepass"))
    except DataFileError as exc:
        assert exc.problems
        return
    assert out and all(ex.text.strip() and all(label.strip() for label in ex.labels) for ex in out)


@FUZZ
@given(st.binary(max_size=1000))
def test_jsonl_parser_on_any_bytes(raw):
    try:
        read_multilabel_jsonl(raw)
    except DataFileError as exc:
        assert exc.problems


@FUZZ
@given(st.lists(st.builds(Example, cell_text, cell_text), min_size=2, max_size=6),
       st.lists(cell_text, min_size=1, max_size=6), st.sampled_from(["END", "START", "NONE"]))
def test_every_snippet_parses_and_holds_the_data_exactly(examples, inputs, truncate):
    snippets = all_snippets(inputs, examples, truncate=truncate)
    for key in ("python", "cohere"):
        ast.parse(snippets[key])
    tree = ast.parse(python_snippet(inputs, examples, truncate=truncate))
    data = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id in ("examples", "inputs")]
    namespace: dict = {"Example": Example}
    exec(compile(ast.Module(body=data, type_ignores=[]), "<snippet>", "exec"), namespace)
    assert namespace["examples"] == examples and namespace["inputs"] == inputs
    body = request_body(inputs, examples, truncate=truncate)
    assert json.loads(snippets["json"]) == body
    words = shlex.split(curl_snippet(inputs, examples, truncate=truncate))
    assert json.loads(words[words.index("--data-binary") + 1]) == body


# ------------------------------------------------------------------------------------ schemathesis

API_CASES = 150
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(api_key="", max_body_bytes=DEFAULT_MAX_BODY_BYTES, preload=False))
API_CHECKS = [checks.not_a_server_error, checks.response_schema_conformance, checks.status_code_conformance,
              checks.content_type_conformance]


@pytest.fixture(scope="module", autouse=True)
def _model_loaded(small_encoder, tmp_path_factory):
    """Load the small model once, before the first generated request; models that POST /v1/tune
    saves go to a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLASSIFY_MODELS_DIR", str(tmp_path_factory.mktemp("fuzz-models")))
        yield


@schema.parametrize()
@settings(max_examples=API_CASES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_openapi_schema(case):
    case.call_and_validate(checks=API_CHECKS)
