"""The dial: one control per SamplerSettings field, presets fill it, its values come back as settings."""
import gradio as gr
import pytest

from engine import PRESETS, SamplerSettings
from engine.settings import knobs
from page.dial import controls, dial_values, settings_from_dial, settings_from_values


def test_every_setting_has_one_control_of_its_kind():
    with gr.Blocks():
        dial = dict(zip([k.name for k in knobs()], controls(SamplerSettings()), strict=True))  # one each
    assert isinstance(dial["strategy"], gr.Dropdown) and dial["strategy"].choices[0][0] == "low_confidence"
    assert isinstance(dial["cache"], gr.Dropdown) and dial["cache"].value == "none"
    assert isinstance(dial["block_length"], gr.Slider) and dial["block_length"].maximum == 64
    assert isinstance(dial["seed"], gr.Number) and dial["seed"].minimum == 0
    assert len({c.elem_id for c in dial.values()}) == len(dial)


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_preset_comes_back_unchanged_through_the_dial(name):
    assert settings_from_dial(dial_values(PRESETS[name])) == PRESETS[name]


def test_zero_on_an_optional_control_is_none_and_a_whole_float_is_a_count():
    settings = settings_from_values({"steps": 0.0, "context_window": 0, "candidates": 3.0, "remask_below": 0})
    assert settings == SamplerSettings(candidates=3)
    assert type(settings.candidates) is int


def test_a_dial_value_the_settings_refuse_names_the_setting():
    with pytest.raises(ValueError, match="candidates must be a whole number from 1 to 64, got 0"):
        settings_from_values({"candidates": 0})
    with pytest.raises(ValueError, match="unknown setting"):
        settings_from_values({"preset": "fast"})


def test_the_dial_the_browser_kept_comes_back_and_a_stale_one_falls_back_to_the_default():
    from page.actions import LENGTH_MODES
    from page.dial import remember, restore
    mine = dial_values(PRESETS["quality"])
    mine[[k.name for k in knobs()].index("candidates")] = 3
    kept = remember("keep", 12, "The", "quality", *mine)
    assert restore(kept, LENGTH_MODES) == ["keep", 12, "The", "quality", *mine]
    stale = {**kept, "candidates": 0, "length": "sideways"}  # a value no longer valid, a mode gone
    assert restore(stale, LENGTH_MODES) == ["auto", 8, "", "fast", *dial_values(PRESETS["fast"])]
    assert restore(None, LENGTH_MODES)[4:] == dial_values(PRESETS["fast"])  # nothing kept yet
