"""
A storefront's notification receiver, for the tests and the benchmarks: a real
HTTP server (threads of this process) that verifies every request's signature
with the `standardwebhooks` library, exactly as a storefront following the
README would, and records what it got and what it answered.

    with NotificationReceiver.start() as receiver:
        endpoint = Endpoint.objects.create(url=receiver.url_for("alice"), owner=alice)
        receiver.trust("alice", endpoint.secret)
        ...
        receiver.wait_for(lambda: len(receiver.acknowledged("alice")) == 3)

Its behaviour can change while it runs, to play a storefront in trouble:
`answer(500)` (any status), `hang()` (answers only after `hang_seconds`, past
the site's timeout), `refuse()` (stops listening: connections are refused) and
`listen()` (back, on the same port). Development and tests only.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from standardwebhooks import Webhook, WebhookVerificationError

from devkit.processes import DEFAULT_HOST, free_port


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it: who it was for, its headers' id, whether it verified, and the answer."""

    name: str
    webhook_id: str
    verified: bool
    error: str
    body: dict | None
    # The status the receiver answered; None while hanging (the site gave up first, or will).
    answered: int | None
    at: float

    @property
    def acknowledged(self) -> bool:
        return self.verified and self.answered is not None and 200 <= self.answered < 300

    @property
    def type(self) -> str | None:
        return (self.body or {}).get("type")

    @property
    def sequence(self) -> int | None:
        return (self.body or {}).get("sequence")


class NotificationReceiver:
    """See the module's docstring. `start()` it (a context manager stops it)."""

    def __init__(self, port: int, *, hang_seconds: float):
        self.port = port
        self.hang_seconds = hang_seconds
        self.url = f"http://{DEFAULT_HOST}:{port}"
        self._secrets: dict[str, str] = {}
        self._records: list[Received] = []
        self._lock = threading.Lock()
        self._status = 200
        self._location: str | None = None
        self._hanging = False
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, *, port: int | None = None, hang_seconds: float = 10.0) -> NotificationReceiver:
        receiver = cls(port or free_port(), hang_seconds=hang_seconds)
        receiver.listen()
        return receiver

    # --- Who it is ------------------------------------------------------------

    def url_for(self, name: str) -> str:
        """The URL of one storefront (one endpoint) on this receiver."""
        return f"{self.url}/notifications/{name}"

    def trust(self, name: str, secret: str) -> None:
        """Verify what comes for `name` with `secret` (a `whsec_…` Standard Webhooks secret)."""
        self._secrets[name] = secret

    # --- How it behaves -----------------------------------------------------------

    def answer(self, status: int, *, location: str | None = None) -> None:
        """Answer every request with `status` (and a `Location`, for a redirect), and stop hanging."""
        self._status = status
        self._location = location
        self._hanging = False
        self._release.set()

    def hang(self) -> None:
        """Answer each request only after `hang_seconds` (or once told to `answer` again)."""
        self._release.clear()
        self._hanging = True

    def refuse(self) -> None:
        """Stop listening: connections are refused until `listen()`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def listen(self) -> None:
        """Listen (again) on the receiver's port."""
        if self._server is not None:
            return
        self._server = ThreadingHTTPServer((DEFAULT_HOST, self.port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self.refuse()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- What it got --------------------------------------------------------------

    def received(self, name: str | None = None) -> list[Received]:
        with self._lock:
            return [record for record in self._records if name is None or record.name == name]

    def acknowledged(self, name: str | None = None) -> list[Received]:
        """What it verified and answered 2xx: delivered, from the site's side."""
        return [record for record in self.received(name) if record.acknowledged]

    def unverified(self) -> list[Received]:
        return [record for record in self.received() if not record.verified]

    def wait_for(self, condition, *, timeout: float = 30.0, what: str = "the notifications") -> None:
        """Wait until `condition()` is true; AssertionError with what was received when `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        summary = [(r.name, r.type, r.sequence, r.answered, r.error) for r in self.received()]
        raise AssertionError(f"Waited {timeout:g} s for {what}; received: {summary}")

    # --- The server ----------------------------------------------------------------

    def _record(self, record: Received) -> None:
        with self._lock:
            self._records.append(record)

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                name = self.path.rstrip("/").rsplit("/", 1)[-1]
                body, error = receiver._verify(name, raw, dict(self.headers.items()))
                webhook_id = self.headers.get("webhook-id", "")
                if receiver._hanging:
                    receiver._record(Received(name, webhook_id, error == "", error, body, None, time.time()))
                    receiver._release.wait(receiver.hang_seconds)
                    self._answer(500, "hung")
                    return
                status = receiver._status if not error else 400
                receiver._record(Received(name, webhook_id, error == "", error, body, status, time.time()))
                self._answer(status, "ok" if status < 300 else f"refused: {error or status}", receiver._location)

            def _answer(self, status: int, text: str, location: str | None = None):
                payload = json.dumps({"result": text}).encode()
                try:
                    self.send_response(status)
                    if location:
                        self.send_header("Location", location)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    # The site gave up waiting and closed the connection.
                    pass

            def log_message(self, format, *args):
                pass

        return Handler

    def _verify(self, name: str, raw: bytes, headers: dict[str, str]) -> tuple[dict | None, str]:
        """The verified body, and '' or why it did not verify (as a storefront would check it)."""
        secret = self._secrets.get(name)
        if secret is None:
            return None, f"no secret for {name!r}"
        try:
            return Webhook(secret).verify(raw, headers), ""
        except WebhookVerificationError as exc:
            return None, f"signature: {exc}"
