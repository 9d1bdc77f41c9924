"""`python -m engine.tools.concepts --model DIR [WORDS ...]`: the concepts a model names, to pick the
`steer` setting's NAMEs: each name holding every word (case-insensitive), known head first, and for a
known concept the tokens its embedding promotes most in the loaded weights (its alignment with their
LM-head rows: the steerling package's `concept_top_tokens`, the check that a name means what it says).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

import torch

from ..families.steerling import SteerlingLM
from ..load import load_model
from ..model import ConceptNames


def matching(names: ConceptNames, words: Sequence[str], limit: int) -> list[tuple[str, str, int]]:
    """(head, name, id) of the names holding every word, known first, shorter names first."""
    wanted = [w.lower() for w in words]
    out = [(head, name, i) for head, table in (("known", names.known), ("unknown", names.unknown))
           for name, i in table.items() if all(w in name.lower() for w in wanted)]
    return sorted(out, key=lambda row: (row[0] != "known", len(row[1]), row[1]))[:limit]


@torch.inference_mode()
def promoted(model: SteerlingLM, concept: int, k: int) -> list[tuple[str, float]]:
    """The k tokens a known concept's (unit) embedding raises most, with that alignment."""
    emb = model.net.known.embeddings(torch.tensor([concept], device=model.device)).float()[0]
    head = model.net.embed.weight if model.net.head is None else model.net.head.weight
    values, ids = (head.float() @ (emb / (emb.norm() + 1e-12))).topk(k)
    return [(model.codec.token_text(int(i)), float(v)) for v, i in zip(values, ids, strict=True)]


def main(argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("words", nargs="*", help="words every listed name holds (none: every name)")
    parser.add_argument("--model", required=True, help="a model folder whose family names concepts (Steerling)")
    parser.add_argument("--limit", type=int, default=20, help="most names listed")
    parser.add_argument("--tokens", type=int, default=6, help="tokens shown per known concept (0: none)")
    args = parser.parse_args(argv)
    model = load_model(args.model, device="cpu")
    names = model.concepts()
    if names is None:
        parser.error(f"{model.label} names no concepts")
    for head, name, i in matching(names, args.words, args.limit):
        tokens = ""
        if head == "known" and args.tokens and isinstance(model, SteerlingLM):
            tokens = "  -> " + " ".join(repr(t) for t, _ in promoted(model, i, args.tokens))
        print(f"{head:7} {i:6}  {name}{tokens}", file=stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
