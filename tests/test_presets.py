import pytest

from playground.presets import DEFAULT_PRESET, list_presets, load_preset
from playground.validation import check_examples, check_inputs


def test_default_preset_is_cohere_guide_example():
    preset = load_preset(DEFAULT_PRESET)
    assert len(preset.examples) == 10
    assert preset.inputs == ("This item was broken when it arrived", "This item broke after 3 weeks")
    assert next(iter(list_presets())) == DEFAULT_PRESET


def test_at_least_five_valid_presets():
    presets = list_presets()
    assert len(presets) >= 5
    for preset in presets.values():
        check_examples(preset.examples)
        check_inputs(preset.inputs)


def test_unknown_preset():
    with pytest.raises(KeyError, match="no preset named 'nope'"):
        load_preset("nope")
    with pytest.raises(KeyError):
        load_preset("../requirements")
