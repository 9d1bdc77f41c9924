"""DiffusionLM: the one small interface every model family is loaded behind."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch

from .codec import SIDE, TextCodec

if TYPE_CHECKING:
    from .memory import MemoryPlan

Noise = Literal["mask", "uniform"]


class CausalView(Protocol):
    """A causal LM over the denoiser's vocabulary, read row by row with a cache of earlier rows."""

    start_id: int  # the token in front of the text (the causal LM's row 0)

    def extend(self, ids: torch.Tensor, past: Any) -> tuple[torch.Tensor, Any]:
        """(B, N) ids following the `past` rows (None: none) -> (B, N, V) next-token logits of each
        row, and the past extended by them."""

    def truncate(self, past: Any, rows: int) -> Any:
        """The first `rows` rows of `past` (None for 0)."""

    def prefix(self, ids: torch.Tensor) -> Any:
        """(N,) row ids from row 0 -> their past (batch 1); rows read before with the same ids
        before them are reused (a causal row depends only on those), not read again."""

    def pick(self, past: Any, index: torch.Tensor) -> Any:
        """`past` of the batch rows `index` (N,), in that order (rows may repeat)."""


class Fluency(Protocol):
    """A causal LM's NLL per token (nats, lower reads better): `DiffusionLM.fluency`'s scorer of an
    edit's window (the Llama family's: engine/families/score.py)."""

    def nll(self, text: str) -> float:
        """Mean NLL of `text`'s tokens, each given the ones before it."""
        ...

    def window_nll(self, document: str, start: int, end: int, side: int = SIDE) -> float:
        """`nll` of document[start:end] with `side` tokens of the document either side (codec.window)."""
        ...


class ConceptNames(Protocol):
    """A family's named concepts (engine/concepts.py's table): the `steer` setting's names -> ids."""

    @property
    def known(self) -> Mapping[str, int]:
        """Known-head concept names -> ids."""
        ...

    @property
    def unknown(self) -> Mapping[str, int]:
        """Unknown-head concept names -> ids."""
        ...

    def resolve(self, pairs: Sequence[tuple[str, float]]
                ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(known, unknown) (concept id, weight) lists; a ValueError naming `steer` for a name it lacks."""
        ...

    def name(self, known_id: int) -> str:
        """A known concept's name."""
        ...


@dataclass(frozen=True)
class ForwardCall:
    """One caller's forward, to run with others' (`DiffusionLM.forward_many`): a `logits_at` call,
    or with `cached` a `cached_logits` call (`cache` None: the full forward that makes a cache)."""

    ids: torch.Tensor        # (B, L)
    positions: torch.Tensor  # (P,)
    cached: bool = False
    cache: Any = None
    steer: tuple[tuple[str, float], ...] = ()  # concepts set to a weight (engine/concepts.py)
    freeze: bool = False     # with cached and no cache: the cache freezes rows no slot needs (cached_logits)


@dataclass(frozen=True)
class CausalCall:
    """The frontier guide's read of the canvas left to right (`CausalView.extend`) as a call that
    shares a forward with the denoiser's (`forward_many`); its answer is extend's (logits, past)."""

    view: CausalView
    ids: torch.Tensor  # (B, N) the rows after `past`
    past: Any = None   # the rows read before (None: none)


Call = ForwardCall | CausalCall


class DiffusionLM(ABC):
    """Token ids in, logits out.

    Contract for `logits(ids)`: ids (B, L) long on `self.device` -> (B, L, V) float, aligned so that
    `logits[:, i]` scores the token at position i. Families with a shifted head (Dream, the bundled
    model: position i-1 predicts token i) do the shift inside their `logits`, so the sampler never
    knows. Attention is bidirectional over the whole canvas.

    `noise` says what an undecided position holds: "mask" models see `mask_id` there; "uniform"
    models (DiffusionGemma) see a random token, and re-masking a span means re-randomising it.
    """

    codec: TextCodec
    noise: Noise
    mask_id: int | None
    vocab_size: int
    max_length: int
    device: torch.device
    label: str  # what the UI and CLI show, e.g. "Dream-style (local: /models/dream)"

    supports_cache: bool = False  # True where `cached_logits` is implemented (engine/context.py)
    demonstration: bool = False   # a small model shipped to try Sharpen with, not to rely on (the page says so)
    # DreamOn's length tokens: written at an undecided slot, expand makes it two undecided slots and
    # delete removes it (engine/resize.py). None for models without them.
    expand_id: int | None = None
    delete_id: int | None = None
    memory: MemoryPlan | None = None  # load_model's estimate (engine/memory.py)
    family: str = ""  # the family load_model picked (engine/load.py FAMILIES' module name), e.g. "dream"
    # Block-causal attention (LLaDA 2, Steerling): a token sees its own block of this many tokens
    # and the earlier ones, so a span does not see the text past its block. None: bidirectional.
    attention_block: int | None = None

    @abstractmethod
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, V) logits, position-aligned (see class docstring)."""

    def logits_at(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(B, P, V) logits of `positions` (P,) only; families may skip work for the others."""
        return self.logits(ids)[:, positions]

    def cached_logits(self, ids: torch.Tensor, positions: torch.Tensor,
                      cache: Any, freeze: bool = False) -> tuple[torch.Tensor, Any]:
        """(B, P, V) logits of `positions` (P,) only, and the context cache.

        cache=None runs the whole canvas and returns a fresh cache of every position's keys and
        values, the rows of `positions` left to run again; with a cache, only those slots (and,
        for shifted heads, the slot before each) are run, attending to the cached context, and
        only `positions`' logits are read out. `freeze` (taken when the cache is made): later
        calls run only the rows the slots they score need; committed slots' rows join the context
        once run with their token. Families that support it set `supports_cache`.
        """
        raise NotImplementedError(f"{type(self).__name__} has no context cache")

    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's answer as if it ran alone: `logits_at`'s (B, P, V) logits, `cached_logits`'
        (logits, cache), or a causal view's `extend`. Canvases may differ in length. Families may
        run the calls as one forward (the Llama family packs them); this default runs each alone."""
        return [self.run_alone(call) for call in calls]

    def run_alone(self, call: Call) -> Any:
        """One call's answer from its own forward."""
        if isinstance(call, CausalCall):
            return call.view.extend(call.ids, call.past)
        if call.cached:
            return self.cached_logits(call.ids, call.positions, call.cache, call.freeze)
        return self.logits_at(call.ids, call.positions)

    def shard(self, rank: int, size: int, device: torch.device) -> None:
        """Keep rank `rank`'s part of the weights (of `size` tensor-parallel ranks, engine/ranks.py)
        and move them to `device`; the forwards then sum the ranks' parts themselves. Families that
        cannot be split refuse."""
        raise UnsupportedModel(f"{self.label}: --tp splits the Llama-layout and MoE families (LLaDA, Dream, "
                               "LLaDA-MoE, LLaDA 2), not this one")

    def fluency(self) -> Fluency | None:
        """The base model's causal scorer of an edit's window (`Fluency`), None for families
        without a causal view (the page then keeps its candidates' order and shows no score)."""
        return None

    def compile(self, mode: str, backend: str = "inductor") -> None:
        """Run the forwards through torch.compile (`mode`) from now on (load_model's `compile`);
        families without compiled forwards refuse."""
        raise ValueError(f"--compile works on the Llama-family models (LLaDA, Dream, the bundled "
                         f"model), not on {self.label}")

    def causal_view(self) -> CausalView | None:
        """A causal LM over this model's vocabulary to guide its frontier (engine/guide.py), None
        where there is none on this machine (the `guide` setting is then refused)."""
        return None

    def concepts(self) -> ConceptNames | None:
        """The named concepts a `ForwardCall.steer` may set (engine/concepts.py); None for families
        whose predictions do not decompose into concepts (the `steer` setting is then refused)."""
        return None

    def attributions(self, ids: torch.Tensor, position: int, token: int,
                     steer: tuple[tuple[str, float], ...] = ()) -> tuple[tuple[str, float], ...]:
        """A family may offer per-token attributions: the concepts that contributed most to `token`
        at `position` of the (L,) canvas `ids`, as (name, logit contribution), largest first; ()
        where the family has none."""
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, noise={self.noise}, V={self.vocab_size})"


class Forwarded:
    """One DiffusionLM attribute of a `Delegating` stand-in: its own value once it sets one, else
    its model's as it is now (a model sharded or given its memory estimate later shows through)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, stand_in: Any, owner: type | None = None) -> Any:
        if stand_in is None:
            return self
        own = stand_in.__dict__
        return own[self.name] if self.name in own else getattr(stand_in.model, self.name)

    def __set__(self, stand_in: Any, value: Any) -> None:
        stand_in.__dict__[self.name] = value


class Delegating(DiffusionLM):
    """A stand-in that is `model` in every attribute and forward unless it overrides one: wrappers
    subclass it so none forgets an attribute the loop reads. Every attribute DiffusionLM declares
    is `Forwarded` (set below, from the class's annotations), so one added there reaches every
    stand-in."""

    def __init__(self, model: DiffusionLM):
        self.model = model

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.logits(ids)

    def logits_at(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.model.logits_at(ids, positions)

    def cached_logits(self, ids: torch.Tensor, positions: torch.Tensor, cache: Any,
                      freeze: bool = False) -> tuple[torch.Tensor, Any]:
        return self.model.cached_logits(ids, positions, cache, freeze)

    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        return self.model.forward_many(calls)

    def shard(self, rank: int, size: int, device: torch.device) -> None:
        self.model.shard(rank, size, device)

    def fluency(self) -> Fluency | None:
        return self.model.fluency()

    def compile(self, mode: str, backend: str = "inductor") -> None:
        self.model.compile(mode, backend)

    def causal_view(self) -> CausalView | None:
        return self.model.causal_view()

    def concepts(self) -> ConceptNames | None:
        return self.model.concepts()

    def attributions(self, ids: torch.Tensor, position: int, token: int,
                     steer: tuple[tuple[str, float], ...] = ()) -> tuple[tuple[str, float], ...]:
        return self.model.attributions(ids, position, token, steer)


MODEL_ATTRIBUTES = tuple(name for name in DiffusionLM.__annotations__ if not name.startswith("_"))
for _name in MODEL_ATTRIBUTES:
    setattr(Delegating, _name, Forwarded(_name))


class Routed(Delegating):
    """A stand-in whose every forward is one `forward_many` call that it hands on (to the scheduler's
    worker, to the tensor-parallel ranks): subclasses give `forward_many` only."""

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits_at(ids, torch.arange(ids.shape[1], device=ids.device))

    def logits_at(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.forward_many([ForwardCall(ids, positions)])[0]

    def cached_logits(self, ids: torch.Tensor, positions: torch.Tensor, cache: Any,
                      freeze: bool = False) -> tuple[torch.Tensor, Any]:
        return self.forward_many([ForwardCall(ids, positions, cached=True, cache=cache, freeze=freeze)])[0]

    @abstractmethod
    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's answer, from wherever the stand-in hands them."""


class ModelNotFound(FileNotFoundError):
    """A model folder or hub id that is not on this machine; the message says how to get it."""


class UnsupportedModel(ValueError):
    """A folder that holds a model of a family Sharpen cannot load."""
