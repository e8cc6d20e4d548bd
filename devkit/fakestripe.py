"""
The local fake Stripe: a launcher for localstripe, for development and tests only.

localstripe (GPL-3.0, a development dependency) is a stateful fake of Stripe's API.
This module only imports it, never copies it, and production code never imports
this module. It runs localstripe's aiohttp app on 127.0.0.1 with its pickle file
turned off, and puts two layers in front of it:

- idempotency like Stripe's: a POST with an ``Idempotency-Key`` is processed once;
  the same key with the same parameters replays the first answer (header
  ``Idempotent-Replayed: true``), with other parameters it is refused (400
  ``idempotency_error``), and while the first request still runs it is refused
  with 409 ``idempotency_key_in_use``. Answers with status >= 500 are not kept.
- a fault layer driven over HTTP (``/_faults``, see ``FaultRule``): answer 500
  without processing, hang before processing, or process and then drop the
  connection so the answer is lost. Faults only ever hit ``/v1/`` paths.

Run the server with::

    python -m devkit.fakestripe --port 8420 [--host 127.0.0.1]
        [--webhook-url URL --webhook-secret SECRET [--webhook-name NAME]]

or, from tests and tools, use ``FakeStripe.start()`` (a subprocess, stdlib only).

aiohttp and localstripe are imported only inside the server functions, so the
``FakeStripe`` helper can be imported without them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from aiohttp import web

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_HOST = "127.0.0.1"
FAULT_MODES = ("error500", "hang", "drop")
DEFAULT_HANG_SECONDS = 30.0
# Where the request's chosen fault travels from the outer to the inner middleware.
HANG_KEY = "fakestripe.hang_seconds"
READY_LINE = "fakestripe listening on"

# ---------------------------------------------------------------------------
# Fault rules (plain Python, no aiohttp)
# ---------------------------------------------------------------------------


class FaultRequestError(ValueError):
    """A ``POST /_faults`` body that does not describe a valid rule."""


@dataclass
class FaultRule:
    """One rule of the fault layer, as posted to ``POST /_faults``.

    ``path`` is a regex searched (``re.search``) in the request path; without it
    the rule matches every ``/v1/`` path. ``times`` caps how often the rule fires
    (None: unlimited). ``probability`` is rolled per matching request with the
    rule's own generator, seeded by ``seed`` for reproducible runs; a request the
    roll spares falls through to the next rule.
    """

    id: str
    mode: str
    method: str | None = None
    path: str | None = None
    times: int | None = None
    probability: float = 1.0
    seed: int | None = None
    seconds: float | None = None
    fired: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path) if self.path is not None else None
        self._rng = random.Random(self.seed)

    @property
    def active(self) -> bool:
        return self.times is None or self.fired < self.times

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        return self._pattern is None or self._pattern.search(path) is not None

    def roll(self) -> bool:
        # Always draw, even at 1.0, so a seeded sequence does not depend on it.
        return self._rng.random() < self.probability

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mode": self.mode,
            "method": self.method,
            "path": self.path,
            "times": self.times,
            "probability": self.probability,
            "seed": self.seed,
            "seconds": self.seconds,
            "fired": self.fired,
            "active": self.active,
        }


class FaultRules:
    """The ordered rules of the fault layer; the first active rule that fires wins."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> FaultRule:
        rule = _parse_rule(spec, f"fault_{next(self._ids)}")
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, method: str, path: str) -> FaultRule | None:
        """The rule that fires for this request, counted as fired, or None."""
        for rule in self.rules:
            if rule.active and rule.matches(method, path) and rule.roll():
                rule.fired += 1
                return rule
        return None


def _parse_rule(spec: Any, rule_id: str) -> FaultRule:
    """Validate a posted rule strictly: a typo should fail loudly, not never fire."""
    if not isinstance(spec, dict):
        raise FaultRequestError("The body must be a JSON object.")
    allowed = {"mode", "method", "path", "times", "probability", "seed", "seconds"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise FaultRequestError(f"Unknown fields: {', '.join(unknown)}.")
    mode = spec.get("mode")
    if mode not in FAULT_MODES:
        raise FaultRequestError(f"'mode' must be one of {', '.join(FAULT_MODES)}.")
    method = spec.get("method")
    if method is not None and not isinstance(method, str):
        raise FaultRequestError("'method' must be a string.")
    path = spec.get("path")
    if path is not None:
        if not isinstance(path, str):
            raise FaultRequestError("'path' must be a string (a regex).")
        try:
            re.compile(path)
        except re.error as exc:
            raise FaultRequestError(f"'path' is not a valid regex: {exc}.") from exc
    times = spec.get("times")
    if times is not None and (not _is_int(times) or times < 1):
        raise FaultRequestError("'times' must be a positive integer.")
    probability = spec.get("probability", 1.0)
    probability = 1.0 if probability is None else probability
    if not _is_number(probability) or not 0.0 <= probability <= 1.0:
        raise FaultRequestError("'probability' must be a number from 0 to 1.")
    seed = spec.get("seed")
    if seed is not None and not _is_int(seed):
        raise FaultRequestError("'seed' must be an integer.")
    seconds = spec.get("seconds")
    if seconds is not None and (not _is_number(seconds) or seconds < 0):
        raise FaultRequestError("'seconds' must be a non-negative number.")
    if mode == "hang" and seconds is None:
        seconds = DEFAULT_HANG_SECONDS
    return FaultRule(
        id=rule_id,
        mode=mode,
        method=method.upper() if method else None,
        path=path,
        times=times,
        probability=float(probability),
        seed=seed,
        seconds=float(seconds) if seconds is not None else None,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---------------------------------------------------------------------------
# Idempotency store (plain Python, no aiohttp)
# ---------------------------------------------------------------------------


@dataclass
class StoredAnswer:
    status: int
    body: bytes
    content_type: str | None


@dataclass
class IdempotencyEntry:
    fingerprint: str
    answer: StoredAnswer | None = None  # None while the first request still runs


class IdempotencyStore:
    """Results of idempotent requests, keyed by (API key, idempotency key).

    Kept in memory only, like the rest of the fake: a restart forgets them.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], IdempotencyEntry] = {}

    def clear(self) -> None:
        self.entries.clear()


def api_key_of(authorization: str) -> str:
    """The secret key of a Bearer or Basic ``Authorization`` header ('' if none)."""
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip()).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return ""
        return decoded.partition(":")[0]
    return ""


def request_fingerprint(method: str, path: str, query: str, content_type: str, body: bytes) -> str:
    """A digest of what the request asks for, blind to parameter order.

    Stripe compares parameters, not bytes: form fields (and JSON keys) are sorted
    so that the same parameters sent in another order count as the same request.
    """
    if content_type.startswith("application/json"):
        try:
            canonical_body = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":"))
        except ValueError:
            canonical_body = body.decode("utf-8", "replace")
    else:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        canonical_body = urllib.parse.urlencode(sorted(pairs))
    canonical_query = urllib.parse.urlencode(sorted(urllib.parse.parse_qsl(query, keep_blank_values=True)))
    text = "\n".join((method.upper(), path, canonical_query, canonical_body))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _mismatch_message(key: str) -> str:
    return (
        "Keys for idempotent requests can only be used with the same parameters they were first used with. "
        f"Try using a key other than '{key}' if you meant to execute a different request."
    )


IN_USE_MESSAGE = (
    "There is currently another in-progress request using this Idempotent Key (that probably means "
    "you submitted twice, and that's fine). Please try again later."
)

# ---------------------------------------------------------------------------
# The server: aiohttp middlewares around localstripe's app
# ---------------------------------------------------------------------------


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    from aiohttp import web

    return web.json_response(payload, status=status, headers=headers)


def _stripe_error(status: int, error: dict[str, str], headers: dict[str, str] | None = None) -> web.Response:
    return _json_response(status, {"error": error}, headers)


def make_fault_middleware(rules: FaultRules) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Outermost layer: serves ``/_faults`` and applies the fault chosen for a ``/v1/`` request."""

    async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/_faults":
            return await _faults_endpoint(request, rules)
        if not request.path.startswith("/v1/"):
            return await handler(request)
        rule = rules.pick(request.method, request.path)
        if rule is None:
            return await handler(request)
        if rule.mode == "error500":
            # Answered here, outside the idempotency layer: nothing runs, nothing is kept.
            return _stripe_error(500, {"type": "api_error", "message": "Injected fault"})
        if rule.mode == "hang":
            # The sleep happens innermost, once the idempotency key is marked in use.
            request[HANG_KEY] = rule.seconds
            return await handler(request)
        # drop: the work is done and its answer kept for a replay; only the answer is lost.
        response = await handler(request)
        await _drop_connection(request)
        return response

    return fault_middleware


async def _drop_connection(request: web.Request) -> None:
    """Close the socket before anything is written, so the client sees no answer at all."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp skips writing to a closed transport; cancelling this handler also
    # stops it from trying, and aiohttp treats that as the client going away.
    raise asyncio.CancelledError


async def _faults_endpoint(request: web.Request, rules: FaultRules) -> web.Response:
    if request.method == "GET":
        return _json_response(200, {"object": "list", "data": [rule.as_dict() for rule in rules.rules]})
    if request.method == "DELETE":
        rules.clear()
        return _json_response(200, {"deleted": True})
    if request.method == "POST":
        try:
            spec = json.loads(await request.read() or b"{}")
            rule = rules.add(spec)
        except (ValueError, FaultRequestError) as exc:
            return _stripe_error(400, {"type": "invalid_request_error", "message": str(exc)})
        return _json_response(200, rule.as_dict())
    return _stripe_error(405, {"type": "invalid_request_error", "message": "Use GET, POST or DELETE."})


def make_idempotency_middleware(
    store: IdempotencyStore,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Stripe's idempotency for ``POST /v1/...`` requests with an ``Idempotency-Key``."""

    async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "DELETE" and request.path == "/_config/data":
            response = await handler(request)
            store.clear()  # a wiped fake must not replay answers about objects it forgot
            return response
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or not request.path.startswith("/v1/"):
            return await handler(request)

        scope = (api_key_of(request.headers.get("Authorization", "")), key)
        fingerprint = request_fingerprint(
            request.method, request.path, request.query_string, request.content_type, await request.read()
        )
        echo = {"Idempotency-Key": key}
        entry = store.entries.get(scope)
        if entry is not None:
            return _answer_existing(entry, fingerprint, key, echo)

        entry = store.entries[scope] = IdempotencyEntry(fingerprint)
        try:
            response = await handler(request)
        except BaseException:
            _forget(store, scope, entry)  # a crash is not an answer: a retry runs again
            raise
        answer = _storable(response)
        if answer is None or answer.status >= 500:
            _forget(store, scope, entry)  # like Stripe: a retry after a 5xx runs again
        else:
            entry.answer = answer
        response.headers.update(echo)
        return response

    return idempotency_middleware


def _answer_existing(entry: IdempotencyEntry, fingerprint: str, key: str, echo: dict[str, str]) -> web.Response:
    from aiohttp import web

    if entry.answer is None:
        error = {"type": "idempotency_error", "code": "idempotency_key_in_use", "message": IN_USE_MESSAGE}
        return _stripe_error(409, error, echo)
    if entry.fingerprint != fingerprint:
        return _stripe_error(400, {"type": "idempotency_error", "message": _mismatch_message(key)}, echo)
    answer = entry.answer
    headers = {**echo, "Idempotent-Replayed": "true"}
    if answer.content_type:
        headers["Content-Type"] = answer.content_type
    return web.Response(status=answer.status, body=answer.body, headers=headers)


def _storable(response: web.StreamResponse) -> StoredAnswer | None:
    """The status, body and content type of a plain response; None for a streamed one."""
    from aiohttp import web

    if not isinstance(response, web.Response):
        return None
    body = response.body
    if body is None:
        body = b""
    if not isinstance(body, bytes | bytearray):
        return None
    return StoredAnswer(response.status, bytes(body), response.headers.get("Content-Type"))


def _forget(store: IdempotencyStore, scope: tuple[str, str], entry: IdempotencyEntry) -> None:
    # Only remove our own entry: a flush may have happened and the key been reused since.
    if store.entries.get(scope) is entry:
        del store.entries[scope]


async def hang_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Innermost layer: the ``hang`` fault delays the work itself, not the answer."""
    seconds = request.get(HANG_KEY)
    if seconds:
        await asyncio.sleep(seconds)
    return await handler(request)


def build_app() -> web.Application:
    """localstripe's app, without disk persistence, with our layers in front of it."""
    from aiohttp import web
    from localstripe.resources import Store
    from localstripe.server import app

    # localstripe pickles its whole store to a fixed /tmp path after every write and
    # reloads it at start: shared between instances and ever slower. Memory only here.
    Store.dump_to_disk = _no_op
    Store.try_load_from_disk = _no_op

    # localstripe builds `app` at import time; its middleware list is still mutable
    # until the app starts, and putting ours first wraps every route it serves.
    ours = [
        make_fault_middleware(FaultRules()),
        make_idempotency_middleware(IdempotencyStore()),
    ]
    app.middlewares[0:0] = [web.middleware(mw) for mw in ours]
    app.middlewares.append(web.middleware(hang_middleware))
    return app


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


def serve(
    port: int,
    host: str = DEFAULT_HOST,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    webhook_name: str = "paymentsite",
) -> None:
    """Run the fake Stripe until SIGINT/SIGTERM."""
    from aiohttp import web
    from localstripe.webhooks import register_webhook

    app = build_app()
    if webhook_url and webhook_secret:
        # Registrations live in memory only, so they are made again at every start.
        register_webhook(webhook_name, webhook_url, webhook_secret, None)

    def announce(*_args: Any) -> None:
        print(f"{READY_LINE} http://{host}:{port}", flush=True)

    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=announce,
        # A client that times out must not cancel the work: that is the ambiguous
        # outcome the `hang` fault exists to produce.
        handler_cancellation=False,
        shutdown_timeout=1.0,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devkit.fakestripe", description=__doc__.splitlines()[1])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default=DEFAULT_HOST, help="default 127.0.0.1 (this machine only)")
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret")
    parser.add_argument("--webhook-name", default="paymentsite")
    args = parser.parse_args(argv)
    if bool(args.webhook_url) != bool(args.webhook_secret):
        parser.error("--webhook-url and --webhook-secret go together")
    serve(args.port, args.host, args.webhook_url, args.webhook_secret, args.webhook_name)


# ---------------------------------------------------------------------------
# FakeStripe: start and drive the server from tests and tools (stdlib only)
# ---------------------------------------------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class FakeStripeError(RuntimeError):
    """The fake Stripe did not start, or answered a control call with an error."""


class ServerProcess:
    """A server we started in a subprocess, logging to a file in its own folder; ``with`` stops it."""

    log_name = "server.log"
    stop_timeout = 5.0

    def __init__(self, port: int, process: subprocess.Popen[bytes], log_dir: Path) -> None:
        self.port = port
        self.process = process
        self.log_dir = log_dir
        self.log_path = log_dir / self.log_name

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, keep_log: bool = False) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after `stop_timeout`) and remove its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep_log:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FakeStripe(ServerProcess):
    """A fake Stripe server in a subprocess on 127.0.0.1; ``with FakeStripe.start() as fs: ...``."""

    secret_key = "sk_test_fakestripe"
    start_timeout = 10.0
    log_name = "fakestripe.log"

    def __init__(self, port: int, process: subprocess.Popen[bytes], log_dir: Path) -> None:
        super().__init__(port, process, log_dir)
        self.api_base = f"http://{DEFAULT_HOST}:{port}"

    # -- lifecycle ----------------------------------------------------------

    @classmethod
    def start(cls, port: int | None = None) -> FakeStripe:
        """Start a server on ``port`` (a free one if None) and wait until it answers."""
        port = port or free_port()
        log_dir = Path(tempfile.mkdtemp(prefix="fakestripe-"))
        with open(log_dir / "fakestripe.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "devkit.fakestripe", "--port", str(port)],
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        server = cls(port, process, log_dir)
        try:
            server._wait_until_ready()
        except BaseException:
            server.stop(keep_log=True)
            raise
        return server

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FakeStripeError(f"fakestripe exited with {self.process.returncode}:\n{self.log_tail()}")
            # The ready line proves that *our* process bound the port (not a squatter);
            # the control call proves our layers are in place.
            if READY_LINE in self.log_tail():
                try:
                    self.faults()
                    return
                except (OSError, FakeStripeError):
                    pass
            time.sleep(0.05)
        raise FakeStripeError(f"fakestripe did not answer within {self.start_timeout} s:\n{self.log_tail()}")

    # -- faults -------------------------------------------------------------

    def add_fault(
        self,
        mode: str,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int | None = None,
        probability: float | None = None,
        seed: int | None = None,
        seconds: float | None = None,
    ) -> dict[str, Any]:
        """Add a fault rule (see ``FaultRule``); returns it, with its ``id``."""
        options = {"method": method, "path": path, "times": times, "probability": probability}
        options.update(seed=seed, seconds=seconds)
        spec = {"mode": mode, **{name: value for name, value in options.items() if value is not None}}
        return self._call("POST", "/_faults", json_body=spec)

    def clear_faults(self) -> None:
        self._call("DELETE", "/_faults")

    def faults(self) -> list[dict[str, Any]]:
        """The rules, each with how often it ``fired``."""
        return self._call("GET", "/_faults")["data"]

    # -- data ---------------------------------------------------------------

    def flush(self) -> None:
        """Forget every object and every stored idempotent answer (not webhooks)."""
        self._call("DELETE", "/_config/data")

    def reset(self) -> None:
        self.flush()
        self.clear_faults()

    def register_webhook(
        self, url: str, secret: str, name: str = "paymentsite", events: list[str] | None = None
    ) -> None:
        body: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = events
        self._call("POST", f"/_config/webhooks/{urllib.parse.quote(name, safe='')}", json_body=body)

    def list(self, resource: str, **params: Any) -> list[dict[str, Any]]:
        """Every object of ``GET /v1/<resource>``, following ``has_more`` pages."""
        objects: list[dict[str, Any]] = []
        query = {**params, "limit": 100}
        while True:
            page = self._call("GET", f"/v1/{resource}", params=query, auth=True)
            objects.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                return objects
            query["starting_after"] = page["data"][-1]["id"]

    # -- HTTP ---------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = False,
    ) -> Any:
        url = self.api_base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.secret_key}"
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise FakeStripeError(f"{method} {path} answered {exc.code}: {detail}") from exc
        return json.loads(body) if body.strip() else None


def free_port() -> int:
    # The kernel picks a free port; the tiny race until the server binds it is acceptable in tests.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((DEFAULT_HOST, 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
