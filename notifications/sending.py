"""
One HTTP POST of a signed notification, and what came of it. Standard library
only (http.client): it never follows a redirect, and a storefront that does not
answer within the timeout is a failed attempt, not a stuck worker.

Signatures follow the Standard Webhooks specification, made by its own library:
`webhook-id` (the event's id, the same on every attempt), `webhook-timestamp`
(this attempt's, Unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`
of `id.timestamp.body`; two of them, space-separated, while a rotated secret
still signs).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from standardwebhooks import Webhook

USER_AGENT = "paymentsite-notifications/1"
# How much of an answer is read, and how much of it is kept for the delivery log.
READ_LIMIT = 4096
EXCERPT_LENGTH = 200


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status (None when none came), how long it took, and why it failed."""

    status_code: int | None
    duration_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


def signed_headers(*, secrets: list[str], message_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """The headers of one attempt: JSON, and the Standard Webhooks signature by each of `secrets`."""
    text = body.decode("utf-8")
    signatures = " ".join(Webhook(secret).sign(message_id, timestamp, text) for secret in secrets)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
    }


def excerpt_of(raw: bytes) -> str:
    """The start of an answer, as text the database and an admin page can hold: printable, one line, short."""
    text = raw.decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:EXCERPT_LENGTH]


def post(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """
    POST `body` to `url` (http or https) and answer what happened. Raises
    nothing: a refused connection, a timeout, a TLS or protocol error is an
    Answer with `error` set. A redirect is an answer like any other 3xx: not
    delivered, and not followed. Each socket operation waits at most `timeout`
    seconds, and a 2xx that came later than `timeout` after the start does not
    count as delivered.
    """
    started = time.monotonic()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Answer(None, 0, error="The URL is not an http(s) URL.")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    status = None
    raw = b""
    error = ""
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        status = response.status
        raw = response.read(READ_LIMIT)
        if time.monotonic() - started > timeout:
            error = f"The answer took longer than {timeout:g} s."
        elif 300 <= status < 400:
            error = f"A redirect ({status}): not followed."
        elif not 200 <= status < 300:
            error = f"HTTP {status}."
    except TimeoutError:
        error = f"No answer within {timeout:g} s."
    except ConnectionRefusedError:
        error = "Connection refused."
    except ssl.SSLError as exc:
        error = f"TLS failed: {exc.reason or type(exc).__name__}."
    except socket.gaierror:
        error = "The host name does not resolve."
    except (OSError, http.client.HTTPException) as exc:
        error = f"The connection failed: {type(exc).__name__}."
    finally:
        connection.close()
    duration_ms = int((time.monotonic() - started) * 1000)
    return Answer(status, duration_ms, excerpt=excerpt_of(raw), error=error)
