"""
The local Stripe's idempotency, like Stripe's (localstripe alone has none): a
``POST /v1/...`` with an ``Idempotency-Key`` is processed once; the same key with
the same parameters replays the first answer (header ``Idempotent-Replayed:
true``), with other parameters it is refused (400 ``idempotency_error``), and while
the first request still runs it is refused with 409 ``idempotency_key_in_use``.
Answers with status >= 500 are not kept. Keys are scoped by API key, kept in
memory, and forgotten by ``DELETE /_config/data``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devkit.stripe_http import stripe_error

if TYPE_CHECKING:
    from aiohttp import web

    from devkit.stripe_http import Handler, Middleware

# --- The store (plain Python, no aiohttp) ----------------------------------------


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


# --- The middleware ------------------------------------------------------------


def make_idempotency_middleware(
    store: IdempotencyStore,
) -> Middleware:
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
        return stripe_error(409, error, echo)
    if entry.fingerprint != fingerprint:
        return stripe_error(400, {"type": "idempotency_error", "message": _mismatch_message(key)}, echo)
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
