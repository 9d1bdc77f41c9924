"""A streaming response that always closes its generator, so an edit never outlives its client."""
from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStream(StreamingResponse):
    """StreamingResponse over an async generator, closed when the response ends however it ends.

    When the client goes away, Starlette cancels the task that streams; a generator suspended at
    a `yield` (not awaiting) is not unwound by that, and would cancel its edit only when garbage
    collected. Closing it here runs its `finally` at once: the edit is cancelled within one step."""

    def __init__(self, content: AsyncGenerator[bytes, None], **kwargs):
        super().__init__(content, **kwargs)
        self._generator = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._generator.aclose()
