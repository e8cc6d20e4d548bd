"""
What the local Stripe's layers (devkit/stripe_*.py) share: the shape of an aiohttp
middleware, and answers in Stripe's JSON shape.

aiohttp is imported inside the functions, so the modules that use these helpers can
be imported without it (the ``FakeStripe`` client needs only the standard library).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
    Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    from aiohttp import web

    return web.json_response(payload, status=status, headers=headers)


def stripe_error(status: int, error: dict[str, str], headers: dict[str, str] | None = None) -> web.Response:
    """An error answer as Stripe sends it: ``{"error": {"type", "message", ...}}``."""
    return json_response(status, {"error": error}, headers)
