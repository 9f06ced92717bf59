import pytest

from playground.validation import (
    Example,
    ValidationError,
    as_examples,
    check_examples,
    check_inputs,
    check_truncate,
    examples_from_rows,
    inputs_from_text,
)


def ex(*pairs):
    return [Example(t, l) for t, l in pairs]


def test_example_forms_are_accepted():
    got = as_examples([Example("a", "x"), ("b", "y"), {"text": "c", "label": "z"}])
    assert got == [Example("a", "x"), Example("b", "y"), Example("c", "z")]


def test_example_rejects_non_strings():
    with pytest.raises(TypeError, match="label must be a string"):
        Example("text", 3)
    with pytest.raises(ValidationError, match=r"examples\[1\] label must be a string"):
        as_examples([("a", "x"), ("b", 5)])
    with pytest.raises(ValidationError, match=r"examples\[0\] is missing label"):
        as_examples([{"text": "a"}])


def test_at_least_two_labels():
    with pytest.raises(ValidationError, match="at least 2 unique labels - found 'pos'"):
        check_examples(ex(("a", "pos"), ("b", "pos")))


def test_each_label_needs_two_examples_and_all_are_named():
    with pytest.raises(ValidationError) as info:
        check_examples(ex(("a", "pos"), ("b", "pos"), ("c", "neg"), ("d", "meh")))
    assert ("invalid request: each unique label must have at least 2 examples. "
            "Not enough examples for: neg, meh") in info.value.problems


def test_empty_text_and_label_are_reported_with_index():
    with pytest.raises(ValidationError) as info:
        check_examples(ex(("a", "pos"), (" ", "pos"), ("c", ""), ("d", "neg"), ("e", "neg")))
    msg = str(info.value)
    assert "empty text at index 1" in msg and "empty label at index 2" in msg


def test_same_text_two_labels_is_a_conflict():
    with pytest.raises(ValidationError, match="given different labels \\(neg, pos\\)"):
        check_examples(ex(("same", "pos"), ("b", "pos"), ("same", "neg"), ("d", "neg")))


def test_no_examples():
    with pytest.raises(ValidationError, match="no examples"):
        check_examples([])


def test_inputs_rules():
    with pytest.raises(ValidationError, match="inputs cannot be empty"):
        check_inputs([])
    with pytest.raises(ValidationError, match="at most 96 - received 104"):
        check_inputs(["x"] * 104)
    with pytest.raises(ValidationError, match="empty string at index 0"):
        check_inputs(["", "x"])
    with pytest.raises(ValidationError, match="not a string at index 1"):
        check_inputs(["x", 3])
    check_inputs(["x"] * 200, max_inputs=None)


def test_truncate_values():
    assert check_truncate("start") == "START"
    with pytest.raises(ValidationError, match="truncate must be one of NONE, START, END"):
        check_truncate("MIDDLE")


def test_grid_rows_skip_blank_and_report_half_rows():
    assert examples_from_rows([("a", "x"), (None, None), ("", float("nan")), (" b ", "y ")]) == ex(("a", "x"), ("b", "y"))
    with pytest.raises(ValidationError) as info:
        examples_from_rows([("a", "x"), ("b", None), (None, "y")])
    assert info.value.problems == [
        "row 2: the label is empty; fill it in or delete the row",
        "row 3: the text is empty; fill it in or delete the row",
    ]


def test_inputs_from_text_one_per_line():
    assert inputs_from_text("first\n\n  second  \n") == ["first", "second"]
