"""SamplerSettings: every field described once, bad values refused with a message naming the field."""
import dataclasses
import math

import pytest

from engine.settings import PRESETS, SamplerSettings, knobs


@pytest.mark.parametrize("name", ["temperature", "threshold", "entropy_bound", "remask_below"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        SamplerSettings(**{name: value})


@pytest.mark.parametrize("name", ["steps", "tokens_per_step", "block_length", "seed", "candidates",
                                  "alternatives", "refresh_every", "context_window", "threshold", "temperature"])
def test_true_is_not_a_number(name):
    with pytest.raises(ValueError, match=rf"{name} must be .*got True \(bool\)"):
        SamplerSettings(**{name: True})


def test_from_json_reads_every_field_and_null_unsets_an_optional_one():
    fast = PRESETS["fast"]
    assert SamplerSettings.from_json(dataclasses.asdict(fast)) == fast
    assert SamplerSettings.from_json({"threshold": 1, "context_window": None}) == SamplerSettings(threshold=1.0)


@pytest.mark.parametrize("body, message", [
    ({"stpes": 3}, "unknown setting(s) stpes"),
    ({"seed": "3"}, "seed must be a whole number from 0 to 9223372036854775807, got '3' (str)"),
    ({"steps": 2.5}, "steps must be a whole number from 1 to 65536 (or none), got 2.5 (float)"),
    ({"candidates": True}, "candidates must be a whole number from 1 to 64, got True (bool)"),
    ({"strategy": 3}, "strategy must be one of low_confidence, random, threshold, entropy, got 3 (int)"),
    ({"cache": "triple"}, "unknown cache 'triple'; choose one of none, dual"),
    ({"temperature": None}, "temperature must be a finite number from 0 to 100, got None (NoneType)"),
    ([["seed", 3]], "settings must be an object of name: value, got list"),
])
def test_from_json_refuses_unknown_names_and_wrong_types_saying_which(body, message):
    with pytest.raises(ValueError) as err:
        SamplerSettings.from_json(body)
    assert message in str(err.value)


def test_every_field_is_described_and_its_default_and_dial_range_are_valid():
    assert [k.name for k in knobs()] == [f.name for f in dataclasses.fields(SamplerSettings)]
    for knob in knobs():
        assert knob.help and (knob.none or not knob.optional), knob.name
        knob.check(knob.default)
        if knob.slider is not None:
            low, high, step = knob.slider
            knob.check(None if knob.optional and low == 0 else low)  # an optional slider's 0 means none
            knob.check(high)
            ticks = (high - low) / step
            assert step > 0 and math.isclose(ticks, round(ticks)), knob.name  # the slider lands on high


@pytest.mark.parametrize("text, value", [("none", None), ("None", None), ("12", 12)])
def test_command_line_text_becomes_a_value(text, value):
    assert next(k for k in knobs() if k.name == "context_window").from_text(text) == value


def test_command_line_text_of_the_wrong_type_says_what_is_wanted():
    seed = next(k for k in knobs() if k.name == "seed")
    with pytest.raises(ValueError, match=r"seed must be a whole number from 0 to 9223372036854775807, got 'none'"):
        seed.from_text("none")


def test_a_seed_the_generator_cannot_take_is_refused_up_front():
    """torch.Generator.manual_seed overflows past 2**63 - 1: refuse such a seed as a setting, not mid-run."""
    SamplerSettings(seed=2**63 - 1)
    with pytest.raises(ValueError, match="seed must be"):
        SamplerSettings(seed=2**70)


@pytest.mark.parametrize("value", [2**64, 1e308, 10**30, 10**400, -(2**64)])
def test_every_number_field_refuses_values_past_its_bounds_with_a_value_error(value):
    """Huge values are a ValueError naming the field, not an OverflowError (or a run of 10^30 steps)."""
    for knob in knobs():
        if knob.choices:
            continue
        with pytest.raises(ValueError, match=knob.name):
            SamplerSettings().with_values({knob.name: value})
