"""What the page's handlers share: the app (`Page`: model, history, limits) and each tab's state (`Doc`)."""
from __future__ import annotations

import copy
import threading
from dataclasses import InitVar, dataclass, field
from typing import Any

from editor.history import History
from engine import DiffusionLM
from engine.length import Scorer

from .access import InFlight, Limits
from .engine_client import EngineClient, InProcessEngine


@dataclass(frozen=True)
class Doc:
    """The document a tab is on: its id and the revision the editor's text started from.
    None, None: a new document nothing has been stored for yet."""

    id: int | None = None
    revision: int | None = None

    @property
    def stored(self) -> bool:
        return self.id is not None


NEW_DOC = Doc()


@dataclass(frozen=True)
class Moves:
    """Where Expand / Shrink last left the selection, and the cursor that walk started from
    (characters), so Shrink walks back down the path Expand went up."""

    cursor: int = 0
    start: int = -1
    end: int = -1

    def cursor_for(self, start: int, end: int) -> int:
        """The walk's cursor while the selection is where the walk left it; else a new walk from `start`."""
        return self.cursor if (start, end) == (self.start, self.end) else start


NO_MOVES = Moves()


@dataclass
class Page:
    """One page's model and history, shared by every tab; handlers take it as their first argument."""

    model: DiffusionLM
    history: History
    limits: Limits = field(default_factory=Limits)
    score: Scorer | None = None           # candidates' ranking (none: the loop's order)
    client: InitVar[EngineClient | None] = None  # where runs go (none: in process, over `model`)
    engine_client: EngineClient = field(init=False)
    runs: InFlight = field(init=False)      # each user's runs in flight (the engine's scheduler is the queue)
    swapping: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self, client: EngineClient | None) -> None:
        self.engine_client = client or InProcessEngine(self.model)
        self.runs = InFlight(self.limits.runs_per_user)
        self.swapping = threading.Lock()

    def pinned(self) -> Page:
        """This page as it is now: a run takes it when it starts, so a model swapped in meanwhile
        (the picker, page/models.py) does not change the model, engine or scorer under it."""
        with self.swapping:
            return copy.copy(self)

    def swap(self, model: DiffusionLM) -> EngineClient:
        """Runs started from now on go to `model` (in process, ranked by its own base fluency); returns
        the engine the runs already going still use."""
        fluency = model.fluency()
        engine = InProcessEngine(model)
        with self.swapping:
            old, self.model, self.engine_client = self.engine_client, model, engine
            self.score = fluency.window_nll if fluency is not None else None
        return old

    @classmethod
    def for_model(cls, model: DiffusionLM, history: History, limits: Limits | None = None,
                  scorer: Scorer | None = None, engine_client: EngineClient | None = None) -> Page:
        """Candidates are ranked by `scorer`, by default the model's base fluency (none: unranked).
        Runs go to `engine_client` (default: in process, over `model`; `model` is what the page reads locally)."""
        if scorer is None:
            fluency = model.fluency()
            scorer = fluency.window_nll if fluency is not None else None
        return cls(model, history, limits or Limits(), scorer, engine_client)

    def mine(self, request: Any) -> History:
        """The history as the logged-in user sees it (without a login: the one local user, None)."""
        return self.history.as_user(getattr(request, "username", None))
