"""Who may use the service: API keys, loopback-only without one, and no requests a web page could forge.

A browser on the user's machine is a client of every service on 127.0.0.1: any web page it has
open can post a form there (`Content-Type: text/plain`, its own Origin), or rebind its own host
name to 127.0.0.1 (a Host the service has never heard of). So the service answers only JSON
posts, no Origin unless allowed, only Host names it knows; and a client that is not this machine
needs a key. No web framework here beyond Starlette's ASGI types.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

KEY_ENV, KEY_FILE_ENV = "SHARPEN_API_KEY", "SHARPEN_API_KEY_FILE"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = ("/health", "/metrics")  # open without a key only with `open_health`


def read_keys(key: str | None = None, key_file: str | Path | None = None,
              environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The API keys: `key`, each non-blank line of `key_file` (`#` comments skipped), else the
    environment's SHARPEN_API_KEY / SHARPEN_API_KEY_FILE. A ValueError names an unreadable file."""
    env = os.environ if environ is None else environ
    key = key or env.get(KEY_ENV) or None
    key_file = key_file or env.get(KEY_FILE_ENV) or None
    keys = [key] if key else []
    if key_file:
        try:
            lines = Path(key_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read the API key file {key_file}: {err}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise ValueError(f"the API key file {key_file} holds no key")
    return tuple(keys)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def host_name(header: str) -> str:
    """A Host header without its port: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:80" -> "::1"."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Policy:
    """What `Guard` lets through. `keys` empty: loopback clients only. `hosts`: Host names besides
    the loopback ones and IP literals ("*": any). `origins`: browser Origins allowed (none by default)."""

    keys: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    open_health: bool = False
    _key_bytes: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key_bytes", tuple(_digest(k.encode()) for k in self.keys))

    def host_allowed(self, header: str) -> bool:
        """DNS rebinding needs a host name: IP literals are safe, names must be known."""
        name = host_name(header).lower()
        if "*" in self.hosts or name in LOOPBACK_NAMES or name in (h.lower() for h in self.hosts):
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False

    def key_matches(self, authorization: str) -> bool:
        """`Authorization: Bearer KEY` against every key, in constant time per key (no early exit)."""
        scheme, _, given = authorization.partition(" ")
        offered = _digest(given.strip().encode())  # equal lengths: the comparison's time says nothing
        found = False
        for key in self._key_bytes:
            found |= hmac.compare_digest(offered, key)
        return found and scheme.lower() == "bearer"

    def refusal(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        """(status, message, headers) when the request may not go on, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        if not self.host_allowed(headers.get("host", "")):
            return 421, (f"Host {headers.get('host', '')!r} is not served here; start the service with "
                         "--allowed-host NAME to serve that name"), {}
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return 403, (f"requests from web pages (Origin {origin!r}) are refused; start the service with "
                         "--allowed-origin ORIGIN to allow one"), {}
        if self.keys:
            if not (self.open_health and path in OPEN_PATHS) and not self.key_matches(headers.get("authorization", "")):
                return 401, "send the service's API key as `Authorization: Bearer KEY`", {"WWW-Authenticate": "Bearer"}
        elif not is_loopback((scope.get("client") or ("",))[0] or ""):
            return 403, ("this service has no API key, so it serves only this machine; start it with --api-key "
                         "(or SHARPEN_API_KEY) to serve others"), {}
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                return 415, f"send the body as JSON (Content-Type: application/json), not {media or 'no type'!r}", {}
        return None


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class Guard:
    """ASGI middleware: each HTTP request passes `policy` or gets its refusal as {"error": ...}."""

    def __init__(self, app: ASGIApp, policy: Policy):
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self.policy.refusal(scope) if scope["type"] == "http" else None
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, message, extra = refused
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *((k.encode(), v.encode()) for k, v in extra.items())]})
        await send({"type": "http.response.body", "body": body})


def startup_note(policy: Policy, host: str) -> str:
    """What the service says at start about who it serves."""
    if not policy.keys:
        where = "" if is_loopback(host) else f" (listening on {host}, others get 403)"
        return (f"no API key: serving loopback clients only{where}; --api-key, --api-key-file or SHARPEN_API_KEY "
                "to serve others")
    hosts = ", ".join(("loopback names", "IP addresses", *policy.hosts))
    return f"{len(policy.keys)} API key(s); Host names served: {hosts}" + (
        "; /health and /metrics open" if policy.open_health else "")
