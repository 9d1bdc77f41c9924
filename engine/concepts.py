"""Concept steering and attribution, for families whose predictions decompose into named concepts
(Steerling: known + unknown concept heads). Model-agnostic: a family offers `DiffusionLM.concepts()`
(its names) and `attributions`; everything else here works on names and plain numbers.

The `steer` setting is "NAME=WEIGHT, NAME=WEIGHT": each named concept's weight (a sigmoid, 0..1 as
the model predicts it) is set to WEIGHT at every position the model reads out, as the steerling
package's `steer_known` / `steer_unknown` do (its README: 2.0 amplifies, -1.0 suppresses). The
names travel with every forward (`ForwardCall.steer`), so the scheduler and the instruction edits
carry them as they are; the family resolves them to its concept ids.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import Call, DiffusionLM, ForwardCall, Routed
from .settings import Pairs, SamplerSettings, parse_steer

Ids = list[tuple[int, float]]           # (concept id, weight) in one head


@dataclass(frozen=True)
class ConceptNames:
    """A family's concept names -> ids, per head ("known", "unknown"), and known ids -> names."""

    known: Mapping[str, int]
    unknown: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_csv(cls, path: Path) -> ConceptNames:
        """A labels table with the steerling package's catalog columns concept_id, concept_name, head
        (a name repeated in one head keeps its first id); a ValueError names the line it cannot read."""
        heads: dict[str, dict[str, int]] = {"known": {}, "unknown": {}}
        with path.open(newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                head = heads.get((row.get("head") or "known").strip())
                try:
                    name, concept = (row["concept_name"] or "").strip(), int(row["concept_id"] or "")
                except (KeyError, ValueError):
                    raise ValueError(f"{path} line {line}: expected the columns concept_id (a whole number), "
                                     "concept_name and head") from None
                if head is not None and name:
                    head.setdefault(name, concept)
        return cls(heads["known"], heads["unknown"])

    def resolve(self, pairs: Sequence[tuple[str, float]]) -> tuple[Ids, Ids]:
        """(known, unknown) (id, weight) lists; a name in neither head is a ValueError naming `steer`."""
        known, unknown = [], []
        for name, weight in pairs:
            if name in self.known:
                known.append((self.known[name], weight))
            elif name in self.unknown:
                unknown.append((self.unknown[name], weight))
            else:
                some = ", ".join(sorted(self.known)[:5])
                raise ValueError(f"steer: unknown concept {name!r} (this model names {len(self.known):,} "
                                 f"known concepts{', e.g. ' + some if some else ''})")
        return known, unknown

    @functools.cached_property
    def by_id(self) -> dict[int, str]:
        return {i: n for n, i in self.known.items()}

    def name(self, known_id: int) -> str:
        """A known concept's name (its id where the table has none)."""
        return self.by_id.get(known_id, f"known concept #{known_id}")


def steer_for(model: DiffusionLM, settings: SamplerSettings) -> Pairs:
    """The steered concepts `settings` asks of `model`, checked against its names (entry points call
    it before a run starts); a ValueError naming the setting where the model has no such concept."""
    pairs = parse_steer(settings.steer)
    if not pairs:
        return ()
    names = model.concepts()
    if names is None:
        raise ValueError(f"steer: {model.label} names no concepts to steer (a Steerling folder names them "
                         "in concept_labels.csv); leave steer empty")
    names.resolve(pairs)
    return pairs


def steered(model: DiffusionLM, settings: SamplerSettings) -> DiffusionLM:
    """The model the loop runs on: `model` itself unless `settings.steer` names concepts."""
    pairs = parse_steer(settings.steer)
    return Steered(model, pairs) if pairs else model


class Steered(Routed):
    """`model` whose every denoiser forward carries the steered concepts (`ForwardCall.steer`): each
    forward is one `forward_many` (Routed), every other attribute is `model`'s."""

    def __init__(self, model: DiffusionLM, pairs: Pairs):
        super().__init__(model)
        self.pairs = pairs

    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        return self.model.forward_many([dataclasses.replace(c, steer=self.pairs) if isinstance(c, ForwardCall)
                                        else c for c in calls])
