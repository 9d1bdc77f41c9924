"""/v1/edits: regenerate spans of a text, as one JSON result or as NDJSON, one line per step."""
from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..canvas import Canvas
from ..scheduler import Job
from . import wire
from .service import EngineFailed, Overdue, Service, flag, json_object
from .streams import ClosingStream

router = APIRouter()
log = logging.getLogger(__name__)


def service_for(request: Request, body: dict[str, Any]) -> Service:
    """The service of the model the body's "model" names (popped; none: the default)."""
    return request.app.state.served.pick(body)


@router.post("/v1/edits")
async def create_edit(request: Request) -> Response:
    """Body: {"text", "spans": [[start, end] or [start, end, length], ...], "instruction", "seed", any sampler
    setting by name, "language" (the correction rounds' checker), "stream"}. The edit's id comes
    back at once in the X-Edit-Id header (and in each line), so even a plain request can be
    cancelled while it runs; a plain request's status is therefore 200 once accepted, and a run
    that did not finish says so in its body."""
    body = await json_object(request)
    service = service_for(request, body)
    stream = flag(body, "stream")
    canvas, settings = await run_in_threadpool(service.edit, body)  # tokenizing can take a while
    checker = await run_in_threadpool(service.checker, body)
    job = service.submit(canvas, settings, checker)
    headers = {"X-Edit-Id": job.id}
    if stream:
        return ClosingStream(ndjson(service, job, canvas), media_type="application/x-ndjson", headers=headers)
    return ClosingStream(plain(service, job, canvas), media_type="application/json", headers=headers)


@router.delete("/v1/edits/{edit_id}")
async def cancel_edit(edit_id: str, request: Request) -> Response:
    """Cancel an edit in flight: its run stops within one step and its slot is free."""
    if not request.app.state.served.cancel(edit_id):
        return JSONResponse({"error": f"no edit {edit_id} is running (unknown, finished or cancelled)"}, 404)
    return Response(status_code=204)


async def ndjson(service: Service, job: Job, canvas: Canvas) -> AsyncGenerator[bytes, None]:
    """One line per step (`wire.step_line`), then {"done": true, ...the result}, or a last line
    {"cancelled": true} / {"error": ...} when the run did not finish."""
    last = None
    try:
        async with aclosing(service.steps(job)) as steps:
            async for last in steps:
                yield line(wire.step_line(last, canvas, job.id))
    except (EngineFailed, Overdue) as err:
        yield line(unfinished(job, err))
        return
    if last is not None and last.done:
        yield line({"done": True, **wire.result(last, canvas, job.id), **service.deadline_note(job)})
    else:
        yield line({"id": job.id, "cancelled": True})


async def plain(service: Service, job: Job, canvas: Canvas) -> AsyncGenerator[bytes, None]:
    """The result as one JSON object once the run ends (or {"id", "error"} when it did not)."""
    try:
        last = await service.last_step(job)
    except (EngineFailed, Overdue) as err:
        yield line(unfinished(job, err))
        return
    if last is None:
        yield line({"id": job.id, "error": f"edit {job.id} was cancelled"})
    else:
        yield line({**wire.result(last, canvas, job.id), **service.deadline_note(job)})


def unfinished(job: Job, err: Exception) -> dict[str, Any]:
    """The answer of a run that failed or ran out of time (logged: the model or the host is at fault)."""
    log.error("edit %s did not finish: %s", job.id, err, exc_info=err.__cause__)
    return {"id": job.id, "error": str(err)}


def line(item: dict[str, Any]) -> bytes:
    return (json.dumps(item, ensure_ascii=False) + "\n").encode()
