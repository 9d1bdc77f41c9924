"""create_app: the FastAPI app for one model (routes, error shapes, per-request metrics)."""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..limits import DEFAULT_BUDGET
from ..model import DiffusionLM
from ..scheduler import MAX_BATCH, MAX_QUEUE, QueueFull, Scheduler
from ..settings import DEFAULT_PRESET, PRESETS, SamplerSettings
from . import completions, edits, wire
from .guard import Guard, Policy
from .metrics import Metrics
from .models import Served
from .service import DEFAULT_MAX_SECONDS, BadRequest, EngineFailed, Service, TooLarge

log = logging.getLogger(__name__)
SHUTDOWN_WAIT = 2.0  # seconds
LOOPBACK_ONLY = Policy()  # no key: this machine only, loopback Host names and IP literals, no Origin


def create_app(model: DiffusionLM, *, defaults: SamplerSettings = PRESETS[DEFAULT_PRESET], max_batch: int = MAX_BATCH,
               max_queue: int = MAX_QUEUE, model_id: str | None = None, policy: Policy = LOOPBACK_ONLY,
               budget: int = DEFAULT_BUDGET, max_seconds: float = DEFAULT_MAX_SECONDS, docs: bool = False,
               more: Mapping[str, tuple[DiffusionLM, SamplerSettings]] | None = None) -> FastAPI:
    """The service for `model`: its own scheduler and metrics registry (so several apps can live in
    one process). `defaults` are the settings a request starts from; it may change any of them.
    `policy` says who may call it (engine/serve/guard.py); `budget` (steps x candidates x tokens)
    and `max_seconds` bound each edit; `docs` serves /docs and /openapi.json. `more`: further models
    by id, each with its defaults and its own scheduler (engine/serve/models.py); a request's
    "model" picks one, `model` being the default."""
    metrics = Metrics()

    def service_of_model(m: DiffusionLM, settings: SamplerSettings, name: str) -> Service:
        scheduler = Scheduler(m, max_batch=max_batch, max_queue=max_queue, on_forward=metrics.forward)
        return Service(m, scheduler, metrics, settings, name, budget, max_seconds)
    first = model_id or model.label
    served = Served({first: service_of_model(model, defaults, first),
                     **{name: service_of_model(m, d, name) for name, (m, d) in (more or {}).items()}})
    metrics.watch(served.stats)
    service = served.default

    def close_all() -> None:
        for each in served.services.values():
            each.scheduler.close()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # Cancel what still runs; a forward in progress is not waited for past SHUTDOWN_WAIT.
        closing = threading.Thread(target=close_all, name="scheduler-close", daemon=True)
        closing.start()
        await anyio.to_thread.run_sync(closing.join, SHUTDOWN_WAIT)
        if closing.is_alive():
            log.warning("the scheduler did not close within %s s; exiting without it", SHUTDOWN_WAIT)

    app = FastAPI(title="Sharpen engine", summary="regenerate spans with a diffusion language model",
                  lifespan=lifespan, docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.service, app.state.served = service, served
    app.include_router(edits.router)
    app.include_router(completions.router)
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/metrics", metrics_text, methods=["GET"])
    app.add_api_route("/v1/tokenizer", tokenizer, methods=["GET"])
    app.add_exception_handler(BadRequest, refused)
    app.add_exception_handler(TooLarge, too_large)
    app.add_exception_handler(QueueFull, queue_full)
    app.add_exception_handler(EngineFailed, failed)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
    app.add_middleware(Guard, policy=policy)
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: refusals are counted too
    return app


async def health(request: Request) -> dict[str, Any]:
    service: Service = request.app.state.service
    stats = request.app.state.served.stats()
    return {"status": "ok", "model": service.model_id, "queued": stats.queued, "active": stats.active}


async def metrics_text(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.service.metrics.text(), media_type=CONTENT_TYPE_LATEST)


async def tokenizer(request: Request, model: str | None = None) -> dict[str, Any]:
    """The model's tokenizer and limits: what a client (the page) needs to lay out spans and draw
    steps itself, without the weights. `?model=ID` picks one of several served models."""
    service: Service = request.app.state.served.by_name(model)
    return {"model": service.model_id, **wire.model_json(service.model)}


async def refused(request: Request, err: Exception) -> Response:
    return JSONResponse({"error": str(err)}, 400)


async def too_large(request: Request, err: Exception) -> Response:
    return JSONResponse({"error": str(err)}, 413)


async def queue_full(request: Request, err: Exception) -> Response:
    wait = max(1, math.ceil(getattr(err, "retry_after", 1.0)))
    return JSONResponse({"error": f"the engine is busy: {err}"}, 503, {"Retry-After": str(wait)})


async def failed(request: Request, err: Exception) -> Response:
    log.error("edit failed: %s", err, exc_info=err.__cause__)
    return JSONResponse({"error": str(err)}, 500)


async def unexpected(request: Request, err: Exception) -> Response:
    """A bug's answer is still the service's one JSON shape (the traceback goes to the log only)."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=err)
    return JSONResponse({"error": f"the service failed on this request ({type(err).__name__}); it is logged"}, 500)


async def http_error(request: Request, err: Exception) -> Response:
    """FastAPI's own refusals (no such route, wrong method) in the service's one error shape."""
    assert isinstance(err, HTTPException)
    return JSONResponse({"error": f"{request.method} {request.url.path}: {err.detail}"}, err.status_code,
                        err.headers)


class RequestMetrics:
    """ASGI middleware: each HTTP request's route template, status and time to its last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            self.metrics.request(getattr(route, "path", "unmatched"), status, time.perf_counter() - start)
