"""Several models behind one service (`serve --model A --model B`): each its own Service and scheduler
(models share no forwards), a request's "model" field picks one, /v1/models lists them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..catalog import loaded_entry
from ..scheduler import SchedulerStats
from .service import BadRequest, Service


@dataclass
class Served:
    """The services by model id, the first one the default (a request that names no model)."""

    services: dict[str, Service]

    @property
    def default(self) -> Service:
        return next(iter(self.services.values()))

    def pick(self, body: dict[str, Any]) -> Service:
        """The service a request's "model" names (popped from `body`); none: the default. With one model,
        any name is that model (OpenAI clients must name one, often their own default); with several,
        a name that is not served is a 400 naming the field."""
        name = body.pop("model", None)
        if name is None or len(self.services) == 1:
            return self.default
        if not isinstance(name, str) or name not in self.services:
            raise BadRequest(f'"model": no model {name!r} is served here; '
                             f"use one of {', '.join(self.services)} (GET /v1/models)")
        return self.services[name]

    def by_name(self, name: str | None) -> Service:
        """As `pick`, for a query parameter (GET /v1/tokenizer?model=ID)."""
        return self.pick({} if name is None else {"model": name})

    def cancel(self, edit_id: str) -> bool:
        return any(service.cancel(edit_id) for service in self.services.values())

    def stats(self) -> SchedulerStats:
        """Every scheduler's queue and batch, summed (the metrics' gauges)."""
        each = [service.scheduler.stats() for service in self.services.values()]
        return SchedulerStats(queued=sum(s.queued for s in each), active=sum(s.active for s in each),
                              forwards=sum(s.forwards for s in each),
                              last_batch_size=max(s.last_batch_size for s in each))

    def listing(self) -> list[dict[str, Any]]:
        """/v1/models' data: OpenAI's fields, and Sharpen's own (family, parameters, memory) under "sharpen"."""
        return [{"id": model_id, "object": "model", "created": service.started, "owned_by": "sharpen",
                 "sharpen": {"label": service.model.label,
                             **loaded_entry(model_id, service.model, service.model.family or "?").as_json()}}
                for model_id, service in self.services.items()]

