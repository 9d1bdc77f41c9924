"""The service's test fixtures: a trained tiny model, a paced wrapper of it, the app served on a socket."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from engine import PRESETS, DiffusionLM, load_model
from engine.serve.app import create_app
from engine.serve.command import in_thread as served

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "tiny-dream"
TEXT = "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(i)\n"
QUALITY = PRESETS["quality"]  # one token per forward: a span of N tokens takes N steps


@pytest.fixture(scope="session")
def model() -> DiffusionLM:
    torch.set_num_threads(1)  # a tiny net gains nothing from threads on a shared machine
    return load_model(FIXTURE, device="cpu")


class Paced(DiffusionLM):
    """`inner`, except that every batched forward first waits for `gate` (set: open) and `delay`
    seconds: so a test can hold runs in their slots, or make them last long enough to cancel."""

    def __init__(self, inner: DiffusionLM, delay: float = 0.0):
        self.inner, self.delay, self.gate, self.forwards = inner, delay, threading.Event(), 0
        self.gate.set()
        self.codec, self.noise, self.mask_id, self.label = inner.codec, inner.noise, inner.mask_id, inner.label
        self.vocab_size, self.max_length, self.device = inner.vocab_size, inner.max_length, inner.device
        self.supports_cache = inner.supports_cache

    def logits(self, ids):
        return self.inner.logits(ids)

    def logits_at(self, ids, positions):
        return self.inner.logits_at(ids, positions)

    def cached_logits(self, ids, positions, cache, freeze=False):
        return self.inner.cached_logits(ids, positions, cache, freeze)

    def forward_many(self, calls):
        assert self.gate.wait(30), "a test left the gate shut"
        time.sleep(self.delay)
        self.forwards += 1
        return self.inner.forward_many(calls)


@pytest.fixture(scope="module")
def url(model) -> Iterator[str]:
    """The service over the tiny model with the CLI's defaults."""
    with served(create_app(model)) as base:
        yield base


def wait_until(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
