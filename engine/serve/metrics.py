"""The service's Prometheus metrics (`sharpen_*`), one registry per app so that apps stay apart."""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..scheduler import ForwardReport, SchedulerStats

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
RATE_WINDOW = 10.0  # seconds the per-second gauges average over


class Rate:
    """Events per second over the last `window` seconds (for people reading /metrics by eye;
    Prometheus itself takes rate() of the counters)."""

    def __init__(self, window: float = RATE_WINDOW, clock: Callable[[], float] = time.monotonic):
        self.window, self.clock = window, clock
        self._events: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def add(self, amount: float) -> None:
        with self._lock:
            self._events.append((self.clock(), amount))

    def per_second(self) -> float:
        with self._lock:
            since = self.clock() - self.window
            while self._events and self._events[0][0] < since:
                self._events.popleft()
            return sum(amount for _, amount in self._events) / self.window


class Metrics:
    """What the service counts. `forward` is the scheduler's on_forward (its worker thread calls it);
    `request` is called once per HTTP request when its last byte went out."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("sharpen_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("sharpen_request_seconds", "time from a request to its response's last byte "
                                 "(a stream's whole run)", ["route"], buckets=SECONDS, registry=r)
        self.first_step = Histogram("sharpen_first_step_seconds", "time from a submitted edit to its first step "
                                    "(queue wait plus one forward)", buckets=SECONDS, registry=r)
        self.forward_seconds = Histogram("sharpen_forward_seconds", "wall time of one batched forward",
                                         buckets=SECONDS, registry=r)
        self.batch_size = Histogram("sharpen_batch_size", "edits sharing one forward", buckets=BATCH_SIZES,
                                    registry=r)
        self.forwards = Counter("sharpen_forwards", "batched forwards run", registry=r)
        self.tokens = Counter("sharpen_tokens_committed", "span tokens committed (all candidates)", registry=r)
        self.cancelled = Counter("sharpen_edits_cancelled", "edits stopped before the end (DELETE or the "
                                 "client went away)", registry=r)
        self._forward_rate, self._token_rate = Rate(), Rate()
        Gauge("sharpen_forwards_per_second", f"forwards per second over the last {RATE_WINDOW:g} s",
              registry=r).set_function(self._forward_rate.per_second)
        Gauge("sharpen_tokens_per_second", f"tokens committed per second over the last {RATE_WINDOW:g} s",
              registry=r).set_function(self._token_rate.per_second)
        self.queue_depth = Gauge("sharpen_queue_depth", "edits waiting for a batch slot", registry=r)
        self.active = Gauge("sharpen_active_edits", "edits in the batch", registry=r)
        self.last_batch = Gauge("sharpen_last_batch_size", "edits in the latest forward", registry=r)

    def watch(self, stats: Callable[[], SchedulerStats]) -> None:
        """Read the scheduler's queue and batch at every scrape."""
        self.queue_depth.set_function(lambda: stats().queued)
        self.active.set_function(lambda: stats().active)
        self.last_batch.set_function(lambda: stats().last_batch_size)

    def forward(self, report: ForwardReport) -> None:
        self.forwards.inc()
        self.tokens.inc(report.tokens_committed)
        self.forward_seconds.observe(report.seconds)
        self.batch_size.observe(report.batch_size)
        self._forward_rate.add(1)
        self._token_rate.add(report.tokens_committed)

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def text(self) -> bytes:
        """The Prometheus text exposition of everything above."""
        return generate_latest(self.registry)
