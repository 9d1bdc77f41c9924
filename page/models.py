"""The model picker: the models on this machine (engine.catalog), and switching to one while the page runs.

The new model loads in the picker's own event, apart from the runs; once it is ready `Page.swap` puts it
in place in one step. A run pins the page's model, engine and scorer when it starts (`Page.pinned`), so
runs already going finish on the old model; the old engine's scheduler closes when the last of them
lets go of it (`retire`), and the old weights are freed with it.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from engine import DiffusionLM
from engine.catalog import BUNDLED, Entry, loaded_entry
from engine.guide import default_preset
from engine.settings import knobs

from . import views
from .dial import preset_values
from .engine_client import EngineClient
from .outputs import KEEP
from .state import Page


@dataclass
class Models:
    """What the picker offers (`entries`: the catalog at start, `scan`ned again at each page load),
    which one runs (`current`), how to load one (`load(source)`: load_model with the page's device and
    dtype) and the load under way, if any. One per page: every tab sees the same model."""

    entries: list[Entry]
    current: str
    load: Callable[[str | None], DiffusionLM]
    scan: Callable[[], list[Entry]] | None = None  # the catalog again (a page load: models pulled since)
    loading: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def around(cls, model: DiffusionLM, source: str | None, entries: list[Entry],
               load: Callable[[str | None], DiffusionLM], scan: Callable[[], list[Entry]] | None = None) -> Models:
        """The picker for a page that started on `model` (from `source`, None: the bundled one); the
        model is listed first when the catalog does not hold it (a folder outside --models)."""
        name = source or BUNDLED
        listed = [e for e in entries if e.name != name]
        current = next((e for e in entries if e.name == name), None) or loaded_entry(name, model, model.family)
        return cls([current, *listed], name, load, scan)

    def refresh(self) -> gr.Dropdown:
        """The picker listing the catalog as it is now, the running model kept first."""
        if self.scan is not None:
            found = self.scan()
            with self.lock:
                running = self.entry(self.current)
                self.entries = [e for e in [running] if e is not None] + [e for e in found if e.name != self.current]
        return gr.Dropdown(choices=self.choices(), value=self.current)

    def choices(self) -> list[tuple[str, str]]:
        return [(entry.describe(), entry.name) for entry in self.entries]

    def entry(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)

    def short(self, name: str) -> str:
        """How the status line names a model (a folder by its last part)."""
        entry = self.entry(name)
        return entry.short if entry is not None else name


def picker(models: Models) -> tuple[gr.Dropdown, gr.Markdown]:
    """The picker and its status line, not yet placed (the dial drawer renders them at its top)."""
    dropdown = gr.Dropdown(models.choices(), value=models.current, label="model", elem_id="model-picker",
                           info="the models on this machine (python -m engine pull adds one); switching loads "
                                "the new one while runs go on, and swaps it in when ready", render=False)
    status = gr.Markdown(f"running **{models.short(models.current)}**", elem_id="model-status", render=False)
    return dropdown, status


def opened(page: Page, models: Models) -> tuple[gr.Dropdown, str, str]:
    """A page load: the picker (the catalog again: models pulled since), its status line and the title,
    as the model that runs now has them (another tab may have switched since the page was built)."""
    model = page.model
    return (models.refresh(), f"running **{models.short(models.current)}**",
            views.title_html(model.label, model.demonstration, model.attention_block))


def switch(page: Page, models: Models, name: str) -> Iterator[tuple[Any, ...]]:
    """The picker's change: load `name` (the status line says so meanwhile), then swap it in. Yields
    the picker, its status line, the page's title, the dial's preset and its settings (the new model's
    own preset: a guided one needs a model with a base view). A failed load leaves the page on the
    model it had."""
    rest = (KEEP,) * (2 + len(knobs()))  # the title, the preset, the settings
    with models.lock:
        if name == models.current or models.entry(name) is None:
            yield KEEP, KEEP, *rest
            return
        if models.loading is not None:
            yield (models.current, f"⚠ already loading **{models.short(models.loading)}**; pick again when it is "
                   "ready", *rest)
            return
        models.loading, old = name, models.current
    new, was = models.short(name), models.short(old)
    try:
        yield KEEP, f"loading **{new}**… runs go to **{was}** until it is ready", *rest
        entry = models.entry(name)
        assert entry is not None
        try:
            model = models.load(entry.source)
        except (OSError, ValueError) as err:  # not found any more, will not fit, a device it cannot use
            yield old, f"⚠ could not load **{new}**: {err}; still running **{was}**", *rest
            return
        retire(page.swap(model))
        models.current = name
        preset = default_preset(model)
        yield (name, f"running **{new}** (runs started before the switch finish on **{was}**)",
               views.title_html(model.label, model.demonstration, model.attention_block), preset,
               *preset_values(preset))
    finally:
        with models.lock:
            models.loading = None


def retire(engine: EngineClient) -> None:
    """Close `engine`'s scheduler once nothing holds the engine any more: the runs that pinned it
    (`Page.pinned`) have ended. Closing earlier would cancel them; never closing would keep its
    worker thread, and with it the old weights, forever."""
    scheduler = getattr(engine, "__dict__", {}).get("scheduler")  # started at its first run, if any
    if scheduler is not None:
        # In a thread of its own: the last reference may go in any thread, and close() joins threads.
        weakref.finalize(engine, lambda: threading.Thread(target=scheduler.close, name="retire", daemon=True).start())
