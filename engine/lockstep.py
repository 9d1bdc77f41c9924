"""Forwards in lockstep across tensor-parallel ranks: rank 0 hands each batched forward's inputs to
the other ranks, then every rank runs it on its own shard, meeting at each all-reduce inside.

Rank 0 serves HTTP and runs the scheduler over a `Leader`, which stands in for its sharded model:
every `forward_many` first broadcasts the calls (token ids and positions, small), then runs them.
The other ranks `follow`: receive, run the same calls, drop the logits. A context cache (DualCache)
holds each rank's own heads' keys and values, so it stays on its rank: rank 0's loop holds a
`Handle` with a key, the followers keep their part under that key, and a handle that rank 0's
loop lets go of is named in the next message, so the followers free theirs too. While no edit
runs, rank 0 sends a heartbeat every quarter of the timeout, so a follower that hears nothing
for the whole timeout knows rank 0 is gone (docs/ARCHITECTURE.md, "Tensor parallel").
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from .model import Call, DiffusionLM, ForwardCall, Routed
from .ranks import GroupBroken, Ranks, broadcast

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Sent:
    """One ForwardCall as it crosses to the other ranks."""

    ids: torch.Tensor        # (B, L) on the CPU (a CUDA tensor would unpickle onto rank 0's GPU number)
    positions: torch.Tensor  # (P,) on the CPU
    cached: bool
    key: int | None          # cached calls: the context cache they read (or make) on every rank
    freeze: bool = False


@dataclass(frozen=True)
class Message:
    """Rank 0 to the others: a forward's calls (none: a heartbeat), caches to free, or stop."""

    calls: list[Sent] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    stop: bool = False


class Handle:
    """A context cache as rank 0's loop holds it: rank 0's own part, and the followers' key."""

    def __init__(self, key: int, cache: Any):
        self.key, self.cache = key, cache


class Leader(Routed):
    """Rank 0's model: each forward goes to every rank (see the module docstring). `on_broken` hears
    once when the group breaks; every later forward then fails at once, without a collective."""

    def __init__(self, model: DiffusionLM, ranks: Ranks, on_broken: Callable[[GroupBroken], None]):
        super().__init__(model)
        self.ranks, self.on_broken = ranks, on_broken
        self._lock = threading.Lock()              # one broadcast at a time: forwards and heartbeats
        self._keys = itertools.count()
        self._released: deque[int] = deque()       # appended by handles' finalizers, in any thread
        self._broken: GroupBroken | None = None
        self._last_sent = time.monotonic()
        self._closing = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="tp-heartbeat", daemon=True)
        self._heartbeat.start()

    def causal_view(self) -> None:
        """None: the guide's reads would run on rank 0 alone."""
        return None

    def fluency(self) -> None:
        """None: the scorer would run on rank 0 alone."""
        return None

    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        """Every rank runs `calls`; rank 0's answers. A Leader offers no causal view (the guide's
        reads would run on rank 0 alone), so only denoiser calls come."""
        if not all(isinstance(c, ForwardCall) for c in calls):
            raise ValueError("a tensor-parallel model runs no causal (guide) reads")
        calls = cast(Sequence[ForwardCall], calls)
        sent = [self._call(c) for c in calls]
        with self._lock:
            self._send(Message(sent, self._take_released()))
            try:
                answers = self.model.forward_many([self._local(c) for c in calls])
            except GroupBroken as err:
                raise self._fail(err) from None
        return [self._answer(c, s, a) for c, s, a in zip(calls, sent, answers)]

    def close(self) -> None:
        """Tell the followers to stop (if they can still hear) and end the heartbeat."""
        self._closing.set()
        with self._lock:
            if self._broken is None:
                try:
                    broadcast(Message(released=self._take_released(), stop=True), self.ranks)
                except GroupBroken:
                    pass
        self._heartbeat.join()

    def _call(self, call: ForwardCall) -> Sent:
        key = None
        if call.cached:
            key = call.cache.key if isinstance(call.cache, Handle) else next(self._keys)
        return Sent(call.ids.cpu(), call.positions.cpu(), call.cached, key, call.freeze)

    def _local(self, call: ForwardCall) -> ForwardCall:
        cache = call.cache.cache if isinstance(call.cache, Handle) else None
        return ForwardCall(call.ids, call.positions, call.cached, cache, freeze=call.freeze)

    def _answer(self, call: ForwardCall, sent: Sent, answer: Any) -> Any:
        """`answer` with rank 0's cache in a Handle (the one it came in, or a new one)."""
        if not call.cached:
            return answer
        logits, cache = answer
        handle = call.cache if isinstance(call.cache, Handle) else None
        if handle is None:
            assert sent.key is not None
            handle = Handle(sent.key, cache)
            weakref.finalize(handle, self._released.append, sent.key)
        handle.cache = cache
        return logits, handle

    def _take_released(self) -> list[int]:
        keys = []
        while self._released:
            keys.append(self._released.popleft())
        return keys

    def _send(self, message: Message) -> None:
        """Broadcast under the lock; a broken group is reported once and raised."""
        if self._broken is not None:
            raise GroupBroken(str(self._broken))
        try:
            broadcast(message, self.ranks)
        except GroupBroken as err:
            raise self._fail(err) from None
        self._last_sent = time.monotonic()

    def _fail(self, err: GroupBroken) -> GroupBroken:
        if self._broken is None:
            self._broken = err
            self.on_broken(err)
        return err

    def _beat(self) -> None:
        period = self.ranks.timeout / 4
        while not self._closing.wait(period / 4):
            with self._lock:
                if self._broken is not None or self._closing.is_set():
                    return
                if time.monotonic() - self._last_sent >= period:
                    try:
                        self._send(Message(released=self._take_released()))
                    except GroupBroken:
                        return


def follow(model: DiffusionLM, ranks: Ranks, caches: dict[int, Any] | None = None) -> None:
    """A follower's life: run each forward rank 0 sends on this rank's shard, until it says stop.
    `caches`: where this rank keeps its parts of the context caches rank 0's loops hold (by key).
    Raises GroupBroken when rank 0 is gone or the group breaks."""
    caches = {} if caches is None else caches
    while True:
        message = broadcast(None, ranks)
        assert isinstance(message, Message)
        for key in message.released:
            caches.pop(key, None)
        if message.stop:
            return
        if not message.calls:
            continue
        calls = [ForwardCall(c.ids.to(ranks.device), c.positions.to(ranks.device), c.cached,
                             caches.get(c.key) if c.key is not None else None, freeze=c.freeze)
                 for c in message.calls]
        try:
            answers = model.forward_many(calls)
        except GroupBroken:
            raise
        except Exception:  # rank 0 met the same error in the same place; its scheduler answers it
            log.debug("a forward failed on rank %d as it did on rank 0", ranks.rank, exc_info=True)
            continue
        for call, answer in zip(message.calls, answers):
            if call.key is not None:
                caches[call.key] = answer[1]
