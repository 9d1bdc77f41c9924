"""What handlers send back to each panel, in the order of its components' `outputs` (layout.py).

A panel's buttons are enabled only when they can act: Accept when a finished run has a candidate,
Stop while a run streams, Diff with two revisions to compare, Archive with a stored document.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from editor.history import History

from . import views
from .actions import Run
from .state import Doc

RUN_STATES = ("idle", "running", "done", "stopped")
KEEP = gr.update()  # an output left as it is


def history_outputs(h: History, doc: Doc) -> tuple:
    """The history panel: tree, A, B (A the first revision, B the last), Diff, Restore, Label."""
    revs = h.history(doc.id) if doc.id is not None else []
    children = h.tree(doc.id) if doc.id is not None else {}
    labels = views.revision_labels(revs)
    choices = [(labels[r.id], r.id) for r in revs]
    last = choices[-1][1] if choices else None
    first = choices[0][1] if choices else None
    return (views.history_html(revs, children, doc.revision), gr.update(choices=choices, value=first),
            gr.update(choices=choices, value=last), gr.update(interactive=len(revs) > 1),
            gr.update(interactive=bool(revs)), gr.update(interactive=bool(revs)))


def documents_outputs(h: History, doc: Doc) -> tuple:
    """The documents list: open ones (the tab's selected), archived ones, Archive, Unarchive."""
    listed = [(d.name, d.id) for d in h.documents()]
    archived = [(d.name, d.id) for d in h.documents(archived=True)]
    return (gr.update(choices=listed, value=doc.id), gr.update(choices=archived, value=None),
            gr.update(interactive=doc.stored), gr.update(interactive=bool(archived)))


def unchanged(outputs: tuple) -> tuple:
    """Outputs shaped like `outputs`, each left as it is."""
    return (KEEP,) * len(outputs)


def document_outputs(h: History, doc: Doc, name: str, language: str, unsaved: bool = False) -> tuple:
    """What follows the tab's document (the text aside): Doc, history, name, language, Rename, the list,
    the unsaved marker (`unsaved`: the text shown is a draft, not a revision)."""
    return (doc, *history_outputs(h, doc), name, language, gr.update(interactive=doc.stored),
            *documents_outputs(h, doc), unsaved_marker(unsaved))


def unsaved_marker(unsaved: bool) -> str:
    """The top bar's mark for typing not yet stored as a revision (kept as a draft across reloads)."""
    return ('<span class="sh-unsaved" title="Kept as a draft: a reload brings it back. Ctrl+S makes it a '
            'revision.">● unsaved</span>' if unsaved else "")


def controls(state: str) -> tuple:
    """Accept, Accept as branch, Reject all, Stop for a run that is `state` (RUN_STATES)."""
    if state not in RUN_STATES:
        raise ValueError(f"unknown run state {state!r}")
    done = state == "done"
    return (gr.update(interactive=done), gr.update(interactive=done),
            gr.update(interactive=state in ("done", "stopped")), gr.update(interactive=state == "running"))


def run_outputs(live: Any, metrics: Any, run: Run | None | Any, scrub: Any, candidate: Any, inspector: Any,
                state: str | None) -> tuple:
    """The run panel: live view, metrics, Run, scrubber, candidates, inspector, then its buttons
    (state None: left as they are, so a streamed step does not redraw them, nor lose a click on Stop)."""
    buttons = (KEEP,) * 4 if state is None else controls(state)
    return (live, metrics, run, scrub, candidate, inspector, *buttons)


def cleared_run() -> tuple:
    """The run panel with no run: nothing left from the last one (its view, its inspected token)."""
    hide = gr.update(visible=False)
    return run_outputs(views.EMPTY_VIEW, "", None, hide, hide, views.inspector_html(None, None, 0, 0), "idle")


def hidden_confirmation() -> tuple:
    """The "does not parse: accept anyway?" row hidden, its text and the pending accept cleared."""
    return gr.update(visible=False), "", None
