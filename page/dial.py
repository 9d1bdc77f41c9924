"""The dial: one widget per SamplerSettings field (engine.settings.knobs), and its values back to settings;
its short form (SHORT_FORM) first, the rest under Advanced; its values kept in the browser across reloads."""
from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any, TypeVar

import gradio as gr

from engine import DEFAULT_PRESET, PRESETS, SamplerSettings
from engine.settings import Knob, knobs

SHORT_FORM = ("candidates",)  # the settings shown before Advanced (with speed <-> quality and the length)
# The page's own dial fields before the settings, in the order `remember` and `restore` take them.
PAGE_FIELDS = ("length", "n_tokens", "constraint", "preset")


# The short form's help in a writer's words (each field's own help, for the CLI, is more technical).
SHORT_HELP = {"candidates": "how many versions to write at once; you pick one (more take longer)"}

C = TypeVar("C", gr.Slider, gr.Number)


def checked_number(label: str | None, payload: Any) -> Any:
    """A number control's value from a client, refused with a message unless it is a number (or
    none): Gradio compares it with the control's range first, and "abc" or null there is a
    TypeError, an error without a message."""
    if payload is None or (isinstance(payload, (int, float)) and not isinstance(payload, bool)):
        return payload
    raise gr.Error(escape(f"{label or 'this setting'} must be a number, got {payload!r}"), title="Setting")


def checked(control: C, allow_none: bool = True) -> C:
    """`control` (a gr.Slider or gr.Number) whose value from a client passes `checked_number` before
    Gradio's own preprocessing (a subclass would be a custom component to Gradio)."""
    preprocess = control.preprocess

    def check(payload: Any) -> Any:
        if payload is None and not allow_none:
            raise gr.Error(escape(f"{control.label or 'this setting'} must be a number, got None"), title="Setting")
        return preprocess(checked_number(control.label, payload))
    control.preprocess = check  # type: ignore[method-assign]
    return control


def widget(knob: Knob, value: Any) -> gr.components.Component:
    """The dial's control for one setting, showing `value`: a dropdown for choices, a slider where
    the field gives the dial's range, a text box for text (steer), else a number box. An optional
    number shows none as 0. Made unrendered: the dial places it (layout.dial_drawer)."""
    about = dict(label=knob.name.replace("_", " "), elem_id="dial-" + knob.name.replace("_", "-"),
                 info=SHORT_HELP.get(knob.name) or knob.help + (f". 0: {knob.none}" if knob.optional else ""),
                 render=False)
    if knob.choices:
        return gr.Dropdown(list(knob.choices), value=value, **about)
    if knob.kind is str:
        return gr.Textbox(value, **about)
    if knob.slider is not None:
        low, high, step = knob.slider
        return checked(gr.Slider(low, high, value=value, step=step, **about), allow_none=False)
    low = 0 if knob.optional or knob.bounds is None else knob.bounds.low
    return checked(gr.Number(value, minimum=low, **about))


def controls(settings: SamplerSettings) -> list[gr.components.Component]:
    """The dial: one control per setting, in knobs() order, showing `settings`."""
    return [widget(k, value) for k, value in zip(knobs(), dial_values(settings), strict=True)]


def remember(*values: Any) -> dict[str, Any]:
    """The dial as the browser keeps it (gr.BrowserState): PAGE_FIELDS then the settings, by name."""
    return dict(zip([*PAGE_FIELDS, *(k.name for k in knobs())], values, strict=True))


def restore(kept: Any, length_modes: Sequence[str], start: str = DEFAULT_PRESET) -> list[Any]:
    """The dial the browser kept, in `remember`'s order; what is missing or no longer valid (a setting
    renamed, a preset gone) comes from the preset `start` instead."""
    kept = kept if isinstance(kept, dict) else {}
    defaults = dict(zip(PAGE_FIELDS, (length_modes[0], 8, "", start), strict=True))
    page = [kept.get(name, value) for name, value in defaults.items()]
    length, n, constraint, preset = page
    if (length not in length_modes or not isinstance(n, int | float) or isinstance(n, bool) or n < 1
            or not isinstance(constraint, str) or preset not in PRESETS):
        page = list(defaults.values())
    names = [k.name for k in knobs()]
    try:
        settings = settings_from_values({name: kept[name] for name in names})
    except (KeyError, TypeError, ValueError):
        settings = PRESETS[str(page[3])]
    return [*page, *dial_values(settings)]


def dial_values(settings: SamplerSettings) -> list[Any]:
    """`settings` as the dial shows them, in knobs() order (none as 0)."""
    return [0 if value is None else value for value in (getattr(settings, k.name) for k in knobs())]


def preset_values(name: str) -> list[Any]:
    """A named preset as the dial shows it: choosing a preset fills the dial."""
    return dial_values(PRESETS[name])


def settings_from_dial(values: Sequence[Any]) -> SamplerSettings:
    """The dial's values in knobs() order (as an event passes them) as validated settings."""
    return settings_from_values(dict(zip([k.name for k in knobs()], values, strict=True)))


def settings_from_values(values: dict[str, Any]) -> SamplerSettings:
    """The dial's values by field name as validated settings: 0 on an optional number is none, and
    a whole float from a slider is an int. Unknown names and bad values are a ValueError saying which."""
    by_name = {k.name: k for k in knobs()}
    return SamplerSettings.from_json({name: _from_widget(by_name.get(name), value) for name, value in values.items()})


def _from_widget(knob: Knob | None, value: Any) -> Any:
    if knob is None:  # from_json names it
        return value
    if knob.optional and value == 0 and not isinstance(value, bool):
        return None
    if knob.kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
