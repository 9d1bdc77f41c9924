"""Who may use the page and how much: logins from a users file, the per-request budget, each user's runs in flight.

No gradio here. `python -m page.access add NAME [--users FILE]` adds a user (README: Users).
"""
from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.limits import DEFAULT_BUDGET

log = logging.getLogger(__name__)
ITERATIONS = 600_000  # PBKDF2-SHA256, OWASP's 2023 figure; stored with each hash, so it can rise later
LOGIN_MODES = ("auto", "on", "off")


class AccessError(ValueError):
    """A login, budget or queue refusal, worded for the person who asked."""


# -- logins ----------------------------------------------------------------------------------------
def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    """`pbkdf2_sha256$<iterations>$<salt>$<hash>`, salt and hash in base64."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def read_users(path: Path) -> dict[str, str]:
    """name -> stored hash, from lines `name:hash` (blank lines and `#` comments skipped)."""
    if not path.exists():
        return {}
    users = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, stored = line.strip().partition(":")
        if not sep or not name or not stored.startswith("pbkdf2_sha256$"):
            raise AccessError(f"{path}:{number}: expected `name:pbkdf2_sha256$...` "
                              "(made by `python -m page.access add`)")
        users[name] = stored
    return users


def add_user(path: Path, name: str, password: str, iterations: int = ITERATIONS) -> None:
    """Add `name` to the users file, or give it a new password; the file is readable by its owner only."""
    if not name or ":" in name or name != name.strip() or len(name) > 255:
        raise AccessError("a user name is 1 to 255 characters, without ':' or surrounding spaces")
    if len(password) < 8:
        raise AccessError("a password has at least 8 characters")
    users = read_users(path)
    users[name] = hash_password(password, iterations)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("".join(f"{n}:{h}\n" for n, h in users.items()), encoding="utf-8")


class TooManyLogins(AccessError):
    """Logins refused for a while after too many failures (per user name and per address)."""


@dataclass
class Throttle:
    """Failed logins per key ("user", name) or ("address", ip): after `free` failures each further
    try waits 1, 2, 4, ... s (at most `longest`) from the last failure. A success clears its user's
    count, not its address's (one good account must not reset a guesser's address)."""

    free: int = 5
    longest: float = 900.0
    most_keys: int = 10_000  # failures remembered at once: the oldest go first
    clock: Callable[[], float] = time.monotonic
    failures: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)

    def wait(self, keys: list[tuple[str, str]]) -> float:
        """Seconds before `keys` may try again (0: now)."""
        now, waits = self.clock(), [0.0]
        for key in keys:
            count, last = self.failures.get(key, (0, 0.0))
            free = self.free * (4 if key[0] == "address" else 1)  # many users may share an address (a proxy)
            if count >= free:
                waits.append(min(self.longest, 2.0 ** (count - free)) - (now - last))
        return max(waits)

    def record(self, keys: list[tuple[str, str]], ok: bool) -> None:
        now = self.clock()
        for key in keys:
            if ok and key[0] == "user":
                self.failures.pop(key, None)
            elif not ok:
                self.failures[key] = (self.failures.get(key, (0, 0.0))[0] + 1, now)
        if len(self.failures) > self.most_keys:  # forget the stalest half
            for key, _ in sorted(self.failures.items(), key=lambda item: item[1][1])[: self.most_keys // 2]:
                del self.failures[key]


class Logins:
    """Gradio's `launch(auth=...)` check: the users file is read at each login, so a new user needs no
    restart. An unknown name costs the same hashing as a known one (no timing says who exists), and
    `Throttle` slows guessing per name and per address (page/gate.py passes the address)."""

    def __init__(self, path: Path, throttle: Throttle | None = None) -> None:
        self.path = path
        self.throttle = throttle or Throttle()
        self._lock = threading.Lock()
        self._dummies: dict[str, str] = {}  # iterations -> a hash of no one's password, made once

    def __call__(self, name: str, password: str, address: str | None = None) -> bool:
        """Whether `name` and `password` match; TooManyLogins while the throttle says wait."""
        keys = [("user", name)] + ([("address", address)] if address else [])
        with self._lock:
            wait = self.throttle.wait(keys)
        if wait > 0:
            raise TooManyLogins(f"Too many failed logins; try again in {math.ceil(wait)} s.")
        users = read_users(self.path)
        stored = users.get(name)
        ok = check_password(password, stored or self._dummy(users)) and stored is not None
        with self._lock:
            self.throttle.record(keys, ok)
        return ok

    def _dummy(self, users: dict[str, str]) -> str:
        """What an unknown name is checked against: a hash as costly as the users' (their first one's
        iterations, else ITERATIONS)."""
        first = next(iter(users.values()), "").split("$")
        iterations = first[1] if len(first) == 4 and first[1].isdigit() else str(ITERATIONS)
        if iterations not in self._dummies:
            self._dummies[iterations] = hash_password(secrets.token_urlsafe(16), int(iterations))
        return self._dummies[iterations]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def logins_for(host: str, users: Path, mode: str = "auto") -> Logins | None:
    """The login check for a page bound to `host`, or None for the single local user.

    "auto": a login whenever the page is reachable from other machines (any host but loopback);
    "on": always; "off": never (everyone is one user). A login with no users refuses to start.
    """
    if mode not in LOGIN_MODES:
        raise AccessError(f"login is one of {', '.join(LOGIN_MODES)}, not {mode!r}")
    if mode == "off" or (mode == "auto" and is_loopback(host)):
        if not is_loopback(host):
            log.warning("serving %s without a login: everyone who reaches it shares every document", host)
        return None
    if not read_users(users):
        why = "was told to (--login on)" if is_loopback(host) else "can be reached from other machines"
        raise AccessError(f"Sharpen on {host} {why}, so it asks for a login, but {users} has no users. Add one "
                          f"with `python -m page.access add NAME --users {users}` (README: Users), or bind "
                          f"127.0.0.1, or pass --login off to serve everyone as one user.")
    return Logins(users)


# -- how much one request and one user may ask of the model ------------------------------------------
@dataclass(frozen=True)
class Limits:
    """budget: most steps x candidates x tokens one request may cost; runs_per_user: runs one user
    may have waiting or running at once."""

    budget: int = DEFAULT_BUDGET  # the service's --budget default too (engine.limits)
    runs_per_user: int = 1

    def __post_init__(self) -> None:
        if self.budget < 1 or self.runs_per_user < 1:
            raise AccessError(f"the budget and runs per user are at least 1, not {self.budget}, {self.runs_per_user}")


class InFlight:
    """Runs each user has in flight (waiting in the engine's queue or running), at most `per_user`.

    The engine's scheduler is the one queue: runs of different users share its forwards, and it
    admits them first in, first out. This holds no line of its own (no one waits behind another
    user's run here); it only refuses a user's run past their cap."""

    def __init__(self, per_user: int = 1) -> None:
        self.per_user = per_user
        self._runs: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def join(self, user: Hashable) -> None:
        with self._lock:
            if self._runs.get(user, 0) >= self.per_user:
                raise AccessError(f"You already have {self.per_user} run(s) waiting or running; wait for "
                                  f"{'it' if self.per_user == 1 else 'them'} or press Stop.")
            self._runs[user] = self._runs.get(user, 0) + 1

    def leave(self, user: Hashable) -> None:
        with self._lock:
            left = self._runs.pop(user, 0) - 1
            if left > 0:
                self._runs[user] = left

    def count(self, user: Hashable) -> int:
        with self._lock:
            return self._runs.get(user, 0)


def in_flight(runs: InFlight, user: Hashable, run: Iterator[Any]) -> Iterator[Any]:
    """Drive the generator `run` as one of `user`'s runs in flight.

    `run`'s first item comes before the count (it checks the request, so a refusal is immediate and
    counts nothing); a user at their cap is refused; then the rest, straight to the engine. The run
    is counted out however it ends: finished, failed, or stopped (closed)."""
    first = next(run)
    try:
        runs.join(user)
    except AccessError:
        run.close()  # type: ignore[attr-defined]
        raise
    try:
        yield first
        yield from run
    finally:
        runs.leave(user)


def main(argv: list[str] | None = None) -> None:
    from engine.paths import data_dir

    parser = argparse.ArgumentParser(prog="python -m page.access", description="Manage the page's users.")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a user or change a password (asked for twice)")
    add.add_argument("name")
    add.add_argument("--users", type=Path, default=None,
                     help="users file (default: SHARPEN_USERS, else users in the data folder)")
    args = parser.parse_args(argv)
    path = args.users or users_file(data_dir())
    password = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != password:
        raise SystemExit("the passwords differ; nothing changed")
    try:
        add_user(path, args.name, password)
    except AccessError as err:
        raise SystemExit(str(err)) from None
    print(f"{args.name} can log in ({path})")  # noqa: T201 (the command's answer)


def users_file(data: Path) -> Path:
    """SHARPEN_USERS if set, else `users` in the data folder."""
    return Path(os.environ.get("SHARPEN_USERS") or data / "users")


if __name__ == "__main__":
    main()
