"""The bad-input matrix of docs/RELIABILITY.md: CSV, JSONL, inputs/examples and exports.

One test (or one parametrised case) per matrix row that tests/test_data.py, test_export.py,
test_engine.py and test_server.py do not already cover; the table in docs/RELIABILITY.md names
the test for every row, old or new.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import shlex
import subprocess
import time

import pytest
from fastapi.testclient import TestClient

from playground import classify
from playground.data import (
    FIELD_SIZE_LIMIT,
    MAX_FILE_BYTES,
    DataFileError,
    examples_to_csv,
    read_examples_csv,
    read_multilabel_jsonl,
)
from playground.export import all_snippets, curl_snippet, python_snippet, request_body
from playground.server import DEFAULT_MAX_BODY_BYTES, create_app
from playground.validation import MAX_EXAMPLES, Example, ValidationError, check_examples

HOSTILE = [
    'quote " and \' and """triple""" and \'\'\'single triple\'\'\'',
    "back\\slash \\n not a newline \\x00 \\u2028",
    "real\nnewline\r\nand\ttab",
    "$(touch /tmp/pwned) ${HOME} `id` $HOME ; rm -rf / && echo | cat > x",
    "=HYPERLINK(\"http://evil\")",
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "'=already quoted",
    "emoji 🎉👍🏽 RTL שלום مرحبا CJK 日本語 中文",
    "{} {0} %s %(x)s {{f-string}}",
]


# ---------------------------------------------------------------------------------------------- CSV


def test_csv_one_column_file_names_every_row():
    with pytest.raises(DataFileError) as info:
        read_examples_csv(b"text\nhello\nworld\n")
    assert [p.split(":")[0] for p in info.value.problems] == ["row 1", "row 2", "row 3"]
    assert "1 field, expected 2 (text, label): add the missing field" in info.value.problems[0]


def test_csv_extra_columns_without_a_header_are_named():
    with pytest.raises(DataFileError, match=r"row 1: 3 fields, expected 2 .*double quotes"):
        read_examples_csv(b"a,b,c\nd,e\n")


def test_csv_whitespace_only_rows_are_skipped_and_counted():
    parsed = read_examples_csv(b"text,label\na,x\n   \n \t , \t\n,\nb,y\n")
    assert parsed.examples == [Example("a", "x"), Example("b", "y")]
    assert "skipped 3 blank rows" in parsed.warnings
    assert parsed.rows == [2, 6]


def test_csv_quoted_newlines_keep_row_numbers_of_later_rows():
    with pytest.raises(DataFileError) as info:
        read_examples_csv(b'text,label\n"one\ntwo\nthree",x\nonly-one-field\n')
    assert info.value.problems == ["row 3: 1 field, expected 2 (text, label): add the missing field after a delimiter"]


def test_csv_bom_with_header_is_not_part_of_the_first_column_name():
    parsed = read_examples_csv(b"\xef\xbb\xbftext,label\nhello,x\nbye,y\n")
    assert parsed.has_header and parsed.examples[0] == Example("hello", "x")


@pytest.mark.parametrize("raw, expected", [
    ("café,x\nnaïve résumé,y\n".encode("latin-1"), "naïve résumé"),
    ("“smart quotes” – €5,x\nb,y\n".encode("cp1252"), "“smart quotes” – €5"),
], ids=["latin-1", "cp1252-only-chars"])
def test_csv_legacy_encodings_are_decoded_and_said(raw, expected):
    parsed = read_examples_csv(raw)
    assert expected in [ex.text for ex in parsed.examples]
    assert parsed.encoding == "cp1252" and "read as Windows-1252" in parsed.warnings[0]


def test_csv_undecodable_bytes_are_a_clear_error_not_mojibake():
    # 0x81 is undefined in Windows-1252: neither decoding works, so the file is refused, naming the line
    with pytest.raises(DataFileError, match=r"line 2 is not valid UTF-8 \(byte 0x81\): save the file as CSV UTF-8"):
        read_examples_csv(b"ok,x\nbad \x81 byte,y\n")


def test_csv_utf16_file_is_refused_as_binary():
    with pytest.raises(DataFileError, match="NUL bytes, so it is binary or UTF-16"):
        read_examples_csv("text,label\nhello,x\n".encode("utf-16"))


@pytest.mark.parametrize("payload", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
    b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(1, 256)) * 4,  # a zip (xlsx) without NULs after the header
    bytes(range(128, 256)) * 8,
], ids=["png", "xlsx-zip", "high-bytes"])
def test_csv_binary_file_renamed_csv_is_refused(tmp_path, payload):
    path = tmp_path / "photo.csv"
    path.write_bytes(payload)
    with pytest.raises(DataFileError, match="NUL bytes|not valid UTF-8|field|row"):
        read_examples_csv(path)


def test_csv_50_mb_file_is_refused_by_its_size_before_reading(tmp_path):
    path = tmp_path / "huge.csv"
    with path.open("wb") as f:  # sparse: 50 MB on paper, no time spent writing it
        f.truncate(50 * 1024 * 1024)
    started = time.perf_counter()
    with pytest.raises(DataFileError) as info:
        read_examples_csv(path)
    assert time.perf_counter() - started < 1.0
    assert info.value.problems == ["the file is 52.4 MB; labelled files may be at most 20 MB. "
                                   "Split it, or use bulk classify for texts without labels"]
    with pytest.raises(DataFileError, match="at most 20 MB"):  # the page passes bytes, not a path
        read_examples_csv(b"a,b\n" * (MAX_FILE_BYTES // 4 + 1))


def test_csv_100000_rows_parse_quickly_and_the_example_limit_names_the_count():
    raw = "text,label\n" + "".join(f"text number {i},{'abc'[i % 3]}\n" for i in range(100_000))
    started = time.perf_counter()
    parsed = read_examples_csv(raw.encode())
    assert time.perf_counter() - started < 10
    assert len(parsed.examples) == 100_000 and parsed.rows[-1] == 100_001
    with pytest.raises(ValidationError, match=f"too many examples: at most {MAX_EXAMPLES} - received 100000"):
        check_examples(parsed.examples)


def test_csv_unclosed_quote_is_named_with_its_row():
    raw = b'text,label\nok,x\n"unclosed quote swallows the rest,y\n' + b"more text,z\n" * 2_000
    with pytest.raises(DataFileError, match=r"row 3: 1 field, expected 2 .*double quote .* never closed"):
        read_examples_csv(raw)


def test_csv_field_over_the_field_size_limit_is_a_row_numbered_error():
    # was: _csv.Error "field larger than field limit (131072)" escaping as a crash
    raw = b'text,label\nok,x\n"unclosed quote swallows the rest,y\n' + b"more text,z\n" * (FIELD_SIZE_LIMIT // 12 + 1)
    with pytest.raises(DataFileError, match=r"row 3 \(from line 3\) cannot be read .*unclosed double quote"):
        read_examples_csv(raw)


def test_csv_labels_differing_by_case_or_spacing_are_named_with_their_rows():
    parsed = read_examples_csv(b"text,label\na,Positive\nb,positive\nc, positive \nd,POSITIVE\ne,neg\nf,neg\n")
    assert {ex.label for ex in parsed.examples} == {"Positive", "positive", "POSITIVE", "neg"}  # not merged
    assert parsed.warnings == ["labels 'POSITIVE' (row 5), 'Positive' (row 2), 'positive' (rows 3, 4) differ only "
                               "by case or spacing: they count as different labels; make them the same if they "
                               "mean the same"]


# -------------------------------------------------------------------------------------------- JSONL


def test_jsonl_label_as_object_is_named():
    with pytest.raises(DataFileError, match=r'line 2: "label" must be a string or a list of non-empty strings, '
                                            r'got \{"a": 1\}'):
        read_multilabel_jsonl(b'{"text": "ok", "label": "a"}\n{"text": "x", "label": {"a": 1}}\n')


def test_jsonl_10_mb_single_line_is_read():
    line = json.dumps({"text": "word " * 2_000_000, "label": ["a", "b"]}).encode()
    assert len(line) > 10_000_000
    [example] = read_multilabel_jsonl(line)
    assert len(example.text) == 10_000_000 - 1 and example.labels == ("a", "b")


def test_jsonl_deep_nesting_is_a_line_numbered_error_not_a_recursion_crash():
    # was: RecursionError escaping from json.loads
    raw = b'{"text": "ok", "label": "a"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    with pytest.raises(DataFileError, match="line 2: nested too deeply"):
        read_multilabel_jsonl(raw)


def test_jsonl_line_separator_inside_a_string_is_not_a_line_break():
    # was: str.splitlines() split the record at U+2028 and reported two invalid lines
    raw = '{"text": "one\u2028two\x85three\u2029four", "label": "a"}\n{"text": "b", "label": []}\n'.encode()
    first, second = read_multilabel_jsonl(raw)
    assert first.text == "one\u2028two\x85three\u2029four" and second.labels == ()


def test_jsonl_crlf_and_bom_are_accepted():
    assert read_multilabel_jsonl(b'\xef\xbb\xbf{"text": "a", "label": "x"}\r\n\r\n{"text": "b", "label": "y"}\r\n') \
        == read_multilabel_jsonl(b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')


# ----------------------------------------------------------------------------------- inputs, examples


@pytest.fixture(scope="module")
def examples(seed):
    return list(seed.examples)


@pytest.mark.parametrize("truncate", ["END", "START", "NONE"])
def test_10000_character_input_follows_truncate(examples, small_encoder, truncate):
    text = ("The parcel came broken and late. " + "and then some more words " * 400)[:10_000]
    assert len(text) == 10_000 and small_encoder.token_count(text) > small_encoder.max_tokens
    if truncate == "NONE":
        with pytest.raises(ValidationError, match=r"inputs\[0\] is too long: \d+ tokens, the model takes at most "
                                                  r"\d+\. Shorten it, or use truncate END"):
            classify([text], examples, truncate=truncate)
        return
    # END keeps the start, so a different ending changes nothing; START keeps the end, so a different start doesn't
    other = text + " I love it, wonderful!" if truncate == "END" else "I love it, wonderful! " + text
    result, changed = classify([text, other], examples, truncate=truncate)
    assert result.input == text and abs(sum(result.labels.values()) - 1) < 1e-6
    assert changed.labels == pytest.approx(result.labels, abs=1e-4)
    if truncate == "START":
        kept = small_encoder.fit_to_length(text, "START")
        assert text.endswith(kept) and len(kept) < len(text)


UNUSUAL = {
    "emoji": "the box was 💥 broken 😡👎🏽",
    "rtl": "المنتج وصل مكسورا",
    "rtl-mixed": "שלום \u202eevil\u202c order 123",
    "cjk": "荷物が壊れて届きました",
    "control": "bell\x07 escape\x1b[31m nul-free \x01\x02 tab\t del\x7f",
    "zero-width": "zero\u200bwidth\ufeffjoiner\u200d",
    "combining": "e\u0301 a\u0300 Z\u0351\u0352\u0353",
}


def test_unusual_scripts_and_control_characters_classify_and_come_back_verbatim(examples):
    results = classify(list(UNUSUAL.values()), examples)
    assert [r.input for r in results] == list(UNUSUAL.values())
    for r in results:
        assert r.prediction in {"positive", "negative"} and abs(sum(r.labels.values()) - 1) < 1e-6


def test_unusual_texts_as_examples_classify(examples):
    labelled = [Example(text, "odd") for text in list(UNUSUAL.values())[:3]] + list(examples)
    assert classify(["the box was broken"], labelled)[0].labels.keys() == {"odd", "positive", "negative"}


@pytest.fixture(scope="module")
def client(small_encoder):
    return TestClient(create_app(api_key="", max_body_bytes=DEFAULT_MAX_BODY_BYTES, preload=False),
                      raise_server_exceptions=False)


def test_unusual_texts_through_the_api_round_trip(client, examples):
    body = {"inputs": list(UNUSUAL.values()), "examples": [ex.to_dict() for ex in examples]}
    r = client.post("/v1/classify", json=body)
    assert r.status_code == 200, r.text
    assert [c["input"] for c in r.json()["classifications"]] == list(UNUSUAL.values())


@pytest.mark.parametrize("n", [97, 500])
def test_more_than_96_inputs_through_the_api_is_400_in_coheres_words(client, examples, n):
    r = client.post("/v1/classify", json={"inputs": ["text"] * n, "examples": [ex.to_dict() for ex in examples]})
    assert r.status_code == 400
    assert r.json() == {"message": f"total number of texts must be at most 96 - received {n}"}


def test_empty_lines_in_inputs_through_the_api_name_the_index(client, examples):
    r = client.post("/v1/classify", json={"inputs": ["ok", "\n", "\t "], "examples": [ex.to_dict() for ex in examples]})
    assert r.status_code == 400
    assert r.json()["message"] == "inputs contains an element that is the empty string at index 1"


# ------------------------------------------------------------------------------------------ exports


def test_python_snippet_data_executes_to_the_same_strings():
    examples = [Example(text, label) for text, label in zip(HOSTILE, reversed(HOSTILE))]
    code = python_snippet(HOSTILE, examples)
    tree = ast.parse(code)
    data = [node for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id != "results"]
    assert [t.targets[0].id for t in data] == ["examples", "inputs"]
    namespace: dict = {"Example": Example}
    exec(compile(ast.Module(body=data, type_ignores=[]), "<snippet>", "exec"), namespace)  # data only, no classify
    assert namespace["examples"] == examples and namespace["inputs"] == HOSTILE


def test_cohere_snippet_parses_and_holds_every_hostile_string():
    examples = [Example(text, "label " + text[:3]) for text in HOSTILE]
    tree = ast.parse(all_snippets(HOSTILE, examples)["cohere"])
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "classify")
    kwargs = {k.arg: k.value for k in call.keywords}
    assert ast.literal_eval(kwargs["inputs"]) == HOSTILE
    got = [{k.arg: ast.literal_eval(k.value) for k in item.keywords} for item in kwargs["examples"].elts]
    assert got == [ex.to_dict() for ex in examples]


def test_curl_snippet_is_valid_bash_and_sends_the_body_unexpanded(tmp_path):
    examples = [Example(text, "l" + str(i % 2)) for i, text in enumerate(HOSTILE)]
    snippet = curl_snippet(HOSTILE, examples, server_url="http://127.0.0.1:9/x'$(id)")
    assert subprocess.run(["bash", "-n"], input=snippet, text=True, capture_output=True).returncode == 0
    # run it for real with curl replaced by a function that prints its last argument (the body)
    script = 'curl() { printf "%s" "${@: -1}" > "$OUT"; }\n' + snippet
    out = tmp_path / "body.json"
    done = subprocess.run(["bash", "-c", script], env={"OUT": str(out), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
                          capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == request_body(HOSTILE, examples)
    assert not (tmp_path / "x").exists() and not any(tmp_path.glob("pwned*"))
    assert "http://127.0.0.1:9/x'$(id)/v1/classify" in shlex.split(snippet)


def test_json_snippet_round_trips_hostile_strings():
    examples = [Example(text, "l") for text in HOSTILE] + [Example("other", "m"), Example("more", "m")]
    assert json.loads(all_snippets(HOSTILE, examples)["json"])["examples"] == [ex.to_dict() for ex in examples]


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_export_escapes_formula_cells_and_reads_back_exactly(prefix):
    # was: the examples CSV export wrote =cmd|... cells as they were (bulk output escaped them, the export not)
    examples = [Example(prefix + "cmd|' /C calc'!A0", prefix + "label"), Example("'" + prefix + "kept", "plain"),
                Example("it's fine", "'quoted")]
    exported = all_snippets([], examples)["csv"]
    cells = [cell for row in csv.reader(io.StringIO(exported, newline="")) for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))], cells
    assert cells[2:4] == ["'" + examples[0].text, "'" + examples[0].label]
    assert read_examples_csv(exported.encode()).examples == [
        Example(ex.text.strip(), ex.label.strip()) for ex in examples]


def test_examples_csv_round_trips_every_hostile_string():
    examples = [Example(text.strip(), label.strip()) for text, label in zip(HOSTILE, reversed(HOSTILE))]
    assert read_examples_csv(examples_to_csv(examples).encode()).examples == examples


@pytest.mark.parametrize("content", [b"\x9cN)", b'{"inputs": ["caf\xe9"]}'], ids=["garbage", "latin-1-json"])
def test_a_body_that_is_not_utf8_is_400_in_the_message_shape(client, content):
    # was: FastAPI's own {"detail": "There was an error parsing the body"} (found by schemathesis)
    r = client.post("/v1/classify", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()) == {"message"} and "could not be read as UTF-8 JSON" in r.json()["message"]
