"""The page's HTTP edge, around Gradio's own routes: the login check with the client's address,
cancel/reset behind the login, and file paths Gradio refuses answered as refusals, not errors."""
from __future__ import annotations

import contextvars
import http.cookies
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from gradio.exceptions import InvalidPathError
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .access import Logins, TooManyLogins

log = logging.getLogger(__name__)
CLIENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("sharpen_client", default=None)
# Gradio answers these without a login (routes.py adds no login_check to them); a stranger who
# guessed a session's hash and event id could stop its run. Behind the login here.
LOGGED_IN_ONLY = ("/gradio_api/cancel", "/gradio_api/reset")


def login_check(logins: Logins) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's `auth=`: a coroutine function (Gradio awaits those), so the hashing runs in a
    thread, not in the event loop, and a throttled login is 429 with the wait in its message."""
    async def check(name: str, password: str) -> bool:
        try:
            return await anyio.to_thread.run_sync(logins, name, password, CLIENT.get())
        except TooManyLogins as err:
            raise HTTPException(429, str(err)) from None
    return check


def logged_in(scope: Scope) -> bool:
    """Whether the request carries a Gradio login cookie the app issued (True when it has no login)."""
    app = scope.get("app")
    if getattr(app, "auth", None) is None:
        return True
    jar = http.cookies.SimpleCookie()
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar.load(value.decode("latin-1"))
    names = (f"access-token-{app.cookie_id}", f"access-token-unsecure-{app.cookie_id}")  # type: ignore[union-attr]
    return any(name in jar and jar[name].value in app.tokens for name in names)  # type: ignore[union-attr]


class Gate:
    """ASGI middleware: remembers the client's address for the login check; refuses cancel/reset
    without a login."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = CLIENT.set((scope.get("client") or (None,))[0])
        try:
            if scope.get("path", "").rstrip("/") in LOGGED_IN_ONLY and not logged_in(scope):
                await JSONResponse({"detail": "Not authenticated"}, 401)(scope, receive, send)
                return
            await self.app(scope, receive, send)
        finally:
            CLIENT.reset(token)


async def not_served(request: Request, err: Exception) -> JSONResponse:
    """Gradio's file routes raise InvalidPathError for paths outside what they serve (/etc/passwd,
    the users file, `..`): a refusal, logged as one line."""
    log.info("refused file path %s: %s", request.url.path, err)
    return JSONResponse({"detail": "This file is not served."}, 403)


def app_kwargs() -> dict[str, Any]:
    """What Gradio's launch passes to its FastAPI app: the Gate and the file-path refusal."""
    return {"middleware": [Middleware(Gate)], "exception_handlers": {InvalidPathError: not_served}}
