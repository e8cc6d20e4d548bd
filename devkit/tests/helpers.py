"""
Helpers of the development kit's own tests, which drive the local Stripe with the
official `stripe` SDK, configured the way the app is, and no Django.
"""

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import stripe

from devkit.fakestripe import FakeStripe


def make_client(fs: FakeStripe, timeout: float = 2, key: str = "sk_test_x") -> stripe.StripeClient:
    return stripe.StripeClient(
        key,
        base_addresses={"api": fs.api_base},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def wait_for(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@contextlib.contextmanager
def webhook_receiver() -> Iterator[tuple[int, list[tuple[str, bytes, str]]]]:
    """A plain HTTP server on 127.0.0.1 recording every POST as (path, body, Stripe-Signature)."""
    received: list[tuple[str, bytes, str]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the name http.server expects)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port, received
    finally:
        server.shutdown()
        server.server_close()
