"""Checkpoint tensor names <-> LlamaNet's parameter names: one templated table per family.

Each family's checkpoints name the same tensors differently (Hugging Face Llama/Qwen2, LLaDA's
OLMo-style names, llama.cpp's GGUF). A table maps their name templates to ours, `{}` standing for
the layer index, so the runtime only ever sees LlamaNet's names and a new family is one table.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

LEAVES = ("weight", "bias")


def per_block(theirs: str, modules: Mapping[str, str], ours: str = "blocks.{}") -> dict[str, str]:
    """Templates for every block module and leaf: '{theirs}.{module}.{leaf}' -> '{ours}.{module}.{leaf}'."""
    return {f"{theirs}.{a}.{leaf}": f"{ours}.{b}.{leaf}" for a, b in modules.items() for leaf in LEAVES}


@dataclass(frozen=True)
class NameTable:
    """Their tensor name templates -> ours (None: a tensor we drop, e.g. a rotary buffer)."""

    family: str
    table: Mapping[str, str | None]
    drop_containing: tuple[str, ...] = ()   # their names with any of these parts are dropped
    _forward: list = field(init=False, repr=False, compare=False)
    _backward: list = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def pattern(template: str) -> re.Pattern:
            return re.compile(re.escape(template).replace(r"\{\}", r"(\d+)"))
        object.__setattr__(self, "_forward", [(pattern(t), o) for t, o in self.table.items()])
        object.__setattr__(self, "_backward", [(pattern(o), t) for t, o in self.table.items() if o])

    def ours(self, name: str) -> str | None:
        """Their tensor name -> our parameter name; None for tensors we do not load."""
        if any(part in name for part in self.drop_containing):
            return None
        for regex, ours in self._forward:
            match = regex.fullmatch(name)
            if match:
                return None if ours is None else ours.format(*match.groups())
        raise KeyError(f"unexpected tensor {name!r} in a {self.family} checkpoint")

    def theirs(self, ours: str) -> str:
        """Our parameter name -> theirs (to write checkpoints in the family's layout)."""
        for regex, theirs in self._backward:
            match = regex.fullmatch(ours)
            if match:
                return theirs.format(*match.groups())
        raise KeyError(f"{ours!r} has no name in a {self.family} checkpoint")
