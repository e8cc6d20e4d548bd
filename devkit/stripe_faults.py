"""
The local Stripe's fault layer, driven over HTTP (``/_faults``): answer 500 without
processing, hang before processing, or process and then drop the connection so the
answer is lost. Faults only ever hit ``/v1/`` paths.

Two middlewares: ``make_fault_middleware`` is the outermost layer (it serves
``/_faults`` and picks the fault of each request); ``hang_middleware`` is the
innermost, so that a hung request already holds its idempotency key.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devkit.stripe_http import json_response, stripe_error

if TYPE_CHECKING:
    from aiohttp import web

    from devkit.stripe_http import Handler, Middleware

FAULT_MODES = ("error500", "hang", "drop")
DEFAULT_HANG_SECONDS = 30.0
# Where the request's chosen fault travels from the outer to the inner middleware.
HANG_KEY = "fakestripe.hang_seconds"

# --- Fault rules (plain Python, no aiohttp) ------------------------------------


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


# --- The middlewares -----------------------------------------------------------


def make_fault_middleware(rules: FaultRules) -> Middleware:
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
            return stripe_error(500, {"type": "api_error", "message": "Injected fault"})
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
        return json_response(200, {"object": "list", "data": [rule.as_dict() for rule in rules.rules]})
    if request.method == "DELETE":
        rules.clear()
        return json_response(200, {"deleted": True})
    if request.method == "POST":
        try:
            spec = json.loads(await request.read() or b"{}")
            rule = rules.add(spec)
        except (ValueError, FaultRequestError) as exc:
            return stripe_error(400, {"type": "invalid_request_error", "message": str(exc)})
        return json_response(200, rule.as_dict())
    return stripe_error(405, {"type": "invalid_request_error", "message": "Use GET, POST or DELETE."})


async def hang_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Innermost layer: the ``hang`` fault delays the work itself, not the answer."""
    seconds = request.get(HANG_KEY)
    if seconds:
        await asyncio.sleep(seconds)
    return await handler(request)
