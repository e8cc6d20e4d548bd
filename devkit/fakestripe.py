"""
The local fake Stripe: a launcher for localstripe, for development and tests only.

localstripe (GPL-3.0, a development dependency) is a stateful fake of Stripe's API.
The development kit only imports it, never copies it, and production code never
imports the kit. This module runs localstripe's aiohttp app on 127.0.0.1 with its
pickle file turned off, and puts our layers around it, outermost first:

- faults (devkit/stripe_faults.py), driven over HTTP (``/_faults``): answer 500
  without processing, hang before processing, or process and then drop the
  connection so the answer is lost;
- idempotency like Stripe's (devkit/stripe_idempotency.py): the same
  ``Idempotency-Key`` replays the first answer, refuses other parameters (400) and
  a request still running (409);
- localstripe's own middlewares (errors, authentication);
- what localstripe lacks (devkit/stripe_extras.py): parameters real Stripe takes
  and localstripe refuses (a PaymentIntent's ``description``, a refund's
  ``reason``...) are taken out and echoed back, and ``amount_received`` is filled;
- the books (devkit/stripe_ledger.py): Stripe's fees on balance transactions,
  their list with its filters (``payout=``...), disputes and payouts, and the
  ``/_ledger`` controls that open and close disputes and make and pay payouts;
- the ``hang`` fault's sleep, innermost.

Run the server with::

    python -m devkit.fakestripe --port 8420 [--host 127.0.0.1]
        [--webhook-url URL --webhook-secret SECRET [--webhook-name NAME]]

or, from tests and tools, use ``FakeStripe.start()`` (a subprocess, stdlib only).

aiohttp and localstripe are imported only inside the server functions, so the
``FakeStripe`` helper can be imported without them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Where the servers' shared helpers live; imported from here by older callers too.
from devkit.processes import DEFAULT_HOST, PROJECT_ROOT, ServerProcess, free_port
from devkit.stripe_extras import Extras, fill_events, make_extras_middleware
from devkit.stripe_faults import FaultRules, hang_middleware, make_fault_middleware
from devkit.stripe_idempotency import IdempotencyStore, make_idempotency_middleware
from devkit.stripe_ledger import LEDGER, make_ledger_middleware
from devkit.stripe_ledger import install as install_ledger

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["DEFAULT_HOST", "FakeStripe", "FakeStripeError", "ServerProcess", "build_app", "free_port", "main", "serve"]

READY_LINE = "fakestripe listening on"

# --- The server: our layers around localstripe's app ------------------------------


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
    # until the app starts. Faults and idempotency go around localstripe's own
    # (errors, authentication), so idempotency's fingerprint sees every parameter
    # sent; the extras go inside them, to strip parameters only once the caller is
    # authenticated and let localstripe answer its own errors.
    extras = Extras()
    fill_events(extras)
    install_ledger(LEDGER)
    outer = [make_fault_middleware(FaultRules()), make_idempotency_middleware(IdempotencyStore())]
    inner = [make_extras_middleware(extras), make_ledger_middleware(LEDGER), hang_middleware]
    app.middlewares[0:0] = [web.middleware(mw) for mw in outer]
    app.middlewares.extend(web.middleware(mw) for mw in inner)
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


# --- FakeStripe: start and drive the server from tests and tools (stdlib only) --


class FakeStripeError(RuntimeError):
    """The fake Stripe did not start, or answered a control call with an error."""


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

    # -- the books (devkit/stripe_ledger.py) --------------------------------

    def open_dispute(
        self, *, payment_intent: str, amount: int | None = None, reason: str = "fraudulent"
    ) -> dict[str, Any]:
        """Open a dispute of the PaymentIntent's charge (amount and dispute fee withdrawn); answers it."""
        spec = {"payment_intent": payment_intent, "reason": reason, **({"amount": amount} if amount else {})}
        return self._call("POST", "/_ledger/disputes", json_body=spec, auth=True)

    def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        """Close a dispute as `won` (amount back, fee kept) or `lost`; answers it."""
        return self._call("POST", f"/_ledger/disputes/{dispute_id}/close", json_body={"outcome": outcome}, auth=True)

    def make_payout(self, currency: str) -> dict[str, Any]:
        """An automatic payout of every transaction of `currency` not paid out yet (in transit); answers it."""
        return self._call("POST", "/_ledger/payouts", json_body={"currency": currency}, auth=True)

    def pay_payout(self, payout_id: str) -> dict[str, Any]:
        """The bank received it: `payout.paid`, then `payout.reconciliation_completed`; answers it."""
        return self._call("POST", f"/_ledger/payouts/{payout_id}/pay", json_body={}, auth=True)

    def fail_payout(self, payout_id: str) -> dict[str, Any]:
        return self._call("POST", f"/_ledger/payouts/{payout_id}/fail", json_body={}, auth=True)

    def seed_transactions(
        self, count: int, *, currency: str = "usd", amount: int = 2000, start: int | None = None
    ) -> None:
        """`count` charge balance transactions at once, a second apart (benchmarks)."""
        spec = {"count": count, "currency": currency, "amount": amount, **({"start": start} if start else {})}
        self._call("POST", "/_ledger/seed", json_body=spec, auth=True)

    def events(self, event_type: str) -> list[dict[str, Any]]:
        """The events of `event_type` the local Stripe has made, newest first."""
        return self._call("GET", "/v1/events", params={"type": event_type, "limit": 100}, auth=True)["data"]

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


if __name__ == "__main__":
    main()
