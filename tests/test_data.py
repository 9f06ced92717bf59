import json

import pytest

from playground.data import (
    DataFileError,
    MultiLabelExample,
    examples_to_csv,
    read_examples_csv,
    read_multilabel_jsonl,
)
from playground.validation import Example

EXPECTED = [Example("great product", "positive"), Example("it broke", "negative")]


@pytest.mark.parametrize(
    "raw",
    [
        b"great product,positive\nit broke,negative\n",
        b"text,label\ngreat product,positive\nit broke,negative\n",
        b"\xef\xbb\xbftext;label\ngreat product;positive\nit broke;negative\n",
        b"great product\tpositive\r\nit broke\tnegative\r\n",
        b"label,text\npositive,great product\nnegative,it broke\n",
        b"id,text,category\n1,great product,positive\n2,it broke,negative\n",
        b"great product,positive\n\n   \nit broke,negative",
    ],
    ids=["plain", "header", "bom-semicolon", "tab-crlf", "swapped-header", "extra-columns", "blank-rows"],
)
def test_csv_variants(raw):
    assert read_examples_csv(raw).examples == EXPECTED


def test_quoted_fields_keep_commas_and_newlines():
    parsed = read_examples_csv(b'text,label\n"fast, cheap",positive\n"line one\nline two",negative\n')
    assert parsed.examples == [Example("fast, cheap", "positive"), Example("line one\nline two", "negative")]
    assert parsed.has_header and parsed.delimiter == ","


def test_bad_rows_are_named_by_number():
    with pytest.raises(DataFileError) as info:
        read_examples_csv(b"text,label\ngood,positive\nonly one field\nfast, cheap, positive\n,negative\n")
    assert info.value.problems == [
        "row 3: 1 field, expected 2 (text, label): add the missing field after a delimiter",
        "row 4: 3 fields, expected 2 (text, label): put texts that contain the delimiter in double quotes",
        "row 5: empty text",
    ]


@pytest.mark.parametrize(
    "raw, message",
    [(b"", "the file is empty"), (b"text,label\n", "no examples"), (b"a,b\x00c", "NUL bytes")],
    ids=["empty", "header-only", "binary"],
)
def test_unusable_files(raw, message):
    with pytest.raises(DataFileError, match=message):
        read_examples_csv(raw)


def test_cp1252_is_decoded_and_said():
    parsed = read_examples_csv("café crème,positive\nbad,negative\n".encode("cp1252"))
    assert parsed.examples[0].text == "café crème"
    assert parsed.encoding == "cp1252" and "Windows-1252" in parsed.warnings[0]


def test_labels_differing_by_case_are_reported_not_merged():
    parsed = read_examples_csv(b"a,Positive\nb,positive\nc,neg\nd,neg\n")
    assert {ex.label for ex in parsed.examples} == {"Positive", "positive", "neg"}
    assert any("differ only by case" in w for w in parsed.warnings)


def test_csv_round_trip_of_awkward_strings():
    examples = [Example('say "hi", then\nleave', "a,b"), Example("naïve ☃ 日本", "c;d"), Example("back\\slash", "x")]
    assert read_examples_csv(examples_to_csv(examples).encode()).examples == examples


def test_file_too_big(tmp_path, monkeypatch):
    import playground.data as data

    monkeypatch.setattr(data, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.csv"
    path.write_text("x,y\n" * 100)
    with pytest.raises(DataFileError, match="at most 0 MB"):
        read_examples_csv(path)


def test_jsonl_multilabel_forms():
    lines = [
        {"text": "cells and atoms", "label": ["biology", "physics"]},
        {"text": "a poem", "label": "poetry"},
        {"text": "nothing at all", "label": []},
    ]
    raw = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    assert read_multilabel_jsonl(raw.encode()) == [
        MultiLabelExample("cells and atoms", ("biology", "physics")),
        MultiLabelExample("a poem", ("poetry",)),
        MultiLabelExample("nothing at all", ()),
    ]


def test_jsonl_bad_lines_are_named():
    raw = (
        b'{"text": "ok", "label": ["a"]}\n'
        b'{"text": "trailing", "label": ["a"],}\n'
        b'{"label": ["a"]}\n'
        b'{"text": 5, "label": ["a"]}\n'
        b'{"text": "x", "label": 3}\n'
        b'{"text": "x", "label": [["a"]]}\n'
        b'{"text": "x"}\n'
        b'[1, 2]\n'
    )
    with pytest.raises(DataFileError) as info:
        read_multilabel_jsonl(raw)
    problems = info.value.problems
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in range(2, 9)]
    assert "not valid JSON" in problems[0]
    assert 'missing "text"' in problems[1]
    assert '"text" must be a string, got int' in problems[2]
    assert '"label" must be a string or a list' in problems[3]


def test_rows_of_each_example_are_kept_for_later_messages():
    parsed = read_examples_csv(b'text,label\na,x\n\n"multi\nline",y\nc,x\n')
    assert parsed.rows == [2, 4, 5]
