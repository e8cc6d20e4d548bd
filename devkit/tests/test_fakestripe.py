"""
The local fake Stripe (devkit/fakestripe.py): Stripe's idempotency, the fault layer,
and the launcher's promises (no pickle file, 127.0.0.1 only).

One server for the whole module, emptied before each test. No Django: these tests
drive the server with the official `stripe` SDK, configured the way the app is.
"""

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import stripe

from devkit.fakestripe import FakeStripe, FakeStripeError, free_port
from devkit.tests.helpers import make_client, wait_for, webhook_receiver

PI_PARAMS = {"amount": 1000, "currency": "usd", "metadata": {"order": "42"}}
PICKLE = "/tmp/localstripe.pickle"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fs() -> Iterator[FakeStripe]:
    with FakeStripe.start() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fs: FakeStripe) -> None:
    fs.reset()


@pytest.fixture
def client(fs: FakeStripe) -> stripe.StripeClient:
    return make_client(fs)


def create_pi(client: stripe.StripeClient, key: str, **params):
    return client.v1.payment_intents.create(params={**PI_PARAMS, **params}, options={"idempotency_key": key})


def raw_post(fs: FakeStripe, path: str, data: dict, key: str | None = None) -> requests.Response:
    headers = {"Authorization": "Bearer sk_test_x"}
    if key:
        headers["Idempotency-Key"] = key
    return requests.post(fs.api_base + path, data=data, headers=headers, timeout=5)


def count_pis(fs: FakeStripe) -> int:
    return len(fs.list("payment_intents"))


# -- idempotency ---------------------------------------------------------------


def test_same_key_same_params_replays_the_first_answer(fs, client):
    """The same key and parameters (in any order) give one PaymentIntent, replayed with the header."""
    first = create_pi(client, "same-1")
    second = client.v1.payment_intents.create(
        params={"currency": "usd", "metadata": {"order": "42"}, "amount": 1000}, options={"idempotency_key": "same-1"}
    )
    assert second.id == first.id
    assert count_pis(fs) == 1

    # The SDK sends the key as `Idempotency-Key`; check the headers on the wire.
    data = {"amount": "1000", "currency": "usd", "metadata[order]": "42"}
    replay = raw_post(fs, "/v1/payment_intents", data, key="same-1")
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.id
    fresh = raw_post(fs, "/v1/payment_intents", data, key="same-2")
    assert "Idempotent-Replayed" not in fresh.headers
    assert count_pis(fs) == 2


def test_same_key_other_params_is_an_idempotency_error(fs, client):
    """Reusing a key with other parameters: 400 idempotency_error, which the SDK raises as IdempotencyError."""
    create_pi(client, "other-1")
    with pytest.raises(stripe.IdempotencyError) as excinfo:
        create_pi(client, "other-1", amount=2000)
    assert excinfo.value.http_status == 400
    assert excinfo.value.error.type == "idempotency_error"
    assert "Try using a key other than 'other-1'" in excinfo.value.user_message
    assert count_pis(fs) == 1


def test_key_is_scoped_by_api_key(fs):
    """The same idempotency key under two secret keys is two different requests, as at Stripe."""
    a = create_pi(make_client(fs, key="sk_test_a"), "shared")
    b = create_pi(make_client(fs, key="sk_test_b"), "shared")
    assert a.id != b.id
    assert count_pis(fs) == 2


def test_concurrent_same_key_is_409(fs, client):
    """While the first request still runs (hang fault), the same key answers 409 idempotency_key_in_use."""
    fs.add_fault("hang", method="POST", path=r"^/v1/payment_intents$", times=1, seconds=1.0)
    results = {}
    first = threading.Thread(target=lambda: results.update(first=create_pi(client, "conc-1")))
    first.start()
    assert wait_for(lambda: fs.faults()[0]["fired"] == 1)
    time.sleep(0.2)  # let the first request reach the idempotency layer

    with pytest.raises(stripe.APIError) as excinfo:
        create_pi(make_client(fs), "conc-1")
    assert excinfo.value.http_status == 409
    assert excinfo.value.error.code == "idempotency_key_in_use"  # APIError leaves .code empty
    assert excinfo.value.error.type == "idempotency_error"

    first.join(timeout=5)
    assert create_pi(client, "conc-1").id == results["first"].id
    assert count_pis(fs) == 1


def test_client_errors_are_kept_server_errors_are_not(fs, client):
    """A 4xx answer is replayed for the same key; a 5xx is not kept, so the retry runs again."""
    refused = raw_post(fs, "/v1/payment_intents", {"amount": "-1", "currency": "usd"}, "bad-1")
    assert refused.status_code == 400
    again = raw_post(fs, "/v1/payment_intents", {"amount": "-1", "currency": "usd"}, "bad-1")
    assert again.status_code == 400
    assert again.headers.get("Idempotent-Replayed") == "true"

    # localstripe answers 500 "Not implemented" to confirm with a payment_method.
    pi = create_pi(client, "to-confirm")
    crash = raw_post(fs, f"/v1/payment_intents/{pi.id}/confirm", {"payment_method": "pm_card_visa"}, "confirm-1")
    assert crash.status_code == 500
    retry = raw_post(fs, f"/v1/payment_intents/{pi.id}/confirm", {"payment_method": "pm_card_visa"}, "confirm-1")
    assert retry.status_code == 500
    assert "Idempotent-Replayed" not in retry.headers


def test_flush_forgets_idempotent_answers(fs, client):
    """After DELETE /_config/data the same key runs again instead of replaying an object that is gone."""
    before = create_pi(client, "flush-1")
    fs.flush()
    assert count_pis(fs) == 0
    after = create_pi(client, "flush-1")
    assert after.id != before.id
    assert count_pis(fs) == 1


# -- faults against the SDK ----------------------------------------------------------


def test_error500_processes_nothing_and_the_retry_succeeds(fs, client):
    """error500: the SDK raises APIError (500), nothing exists, and the retry with the key creates exactly one."""
    fs.add_fault("error500", method="POST", path=r"^/v1/payment_intents$", times=1)
    with pytest.raises(stripe.APIError) as excinfo:
        create_pi(client, "e500-1")
    assert excinfo.value.http_status == 500
    assert excinfo.value.error.type == "api_error"
    assert count_pis(fs) == 0

    pi = create_pi(client, "e500-1")
    assert pi.status == "requires_payment_method"
    assert [p["id"] for p in fs.list("payment_intents")] == [pi.id]


def test_drop_does_the_work_but_loses_the_answer(fs, client):
    """drop: the SDK raises APIConnectionError, yet the intent exists; the retry with the key returns it."""
    fs.add_fault("drop", method="POST", path=r"^/v1/payment_intents$", times=1)
    with pytest.raises(stripe.APIConnectionError) as excinfo:
        create_pi(client, "drop-1")
    assert excinfo.value.http_status is None  # no answer at all, not an error answer
    held = fs.list("payment_intents")
    assert len(held) == 1

    retry = create_pi(client, "drop-1")
    assert retry.id == held[0]["id"]
    assert count_pis(fs) == 1


def test_hang_past_the_client_timeout_still_does_the_work(fs):
    """hang: the client times out (APIConnectionError), the work finishes later, and the retry returns it."""
    fs.add_fault("hang", method="POST", path=r"^/v1/payment_intents$", times=1, seconds=1.0)
    impatient = make_client(fs, timeout=0.4)
    with pytest.raises(stripe.APIConnectionError) as excinfo:
        create_pi(impatient, "hang-1")
    assert "timed out" in str(excinfo.value).lower()
    assert count_pis(fs) == 0  # the outcome is ambiguous: still running

    with pytest.raises(stripe.APIError) as in_use:
        create_pi(impatient, "hang-1")  # retrying too early meets the running request
    assert in_use.value.http_status == 409

    assert wait_for(lambda: count_pis(fs) == 1)
    retry = create_pi(make_client(fs), "hang-1")
    assert retry.id == fs.list("payment_intents")[0]["id"]
    assert count_pis(fs) == 1


# -- the fault layer's rules --------------------------------------------------------


def test_times_limits_how_often_a_rule_fires(fs):
    """A rule with times=2 fails the next two matching requests only, and reports fired=2."""
    fs.add_fault("error500", method="GET", path=r"^/v1/customers$", times=2)
    statuses = [
        requests.get(f"{fs.api_base}/v1/customers", auth=("sk_test_x", ""), timeout=5).status_code for _ in range(3)
    ]
    assert statuses == [500, 500, 200]
    [rule] = fs.faults()
    assert (rule["fired"], rule["active"]) == (2, False)


def test_probability_with_seed_is_reproducible(fs):
    """probability+seed: the rule fires exactly where random.Random(seed) draws below the probability."""
    fs.add_fault("error500", method="GET", path=r"^/v1/customers$", probability=0.5, seed=1234)
    rng = random.Random(1234)
    expected = [500 if rng.random() < 0.5 else 200 for _ in range(20)]
    got = [
        requests.get(f"{fs.api_base}/v1/customers", auth=("sk_test_x", ""), timeout=5).status_code for _ in range(20)
    ]
    assert got == expected
    assert 0 < expected.count(500) < 20
    assert fs.faults()[0]["fired"] == expected.count(500)


def test_first_matching_active_rule_wins(fs):
    """Rules are tried in order; once the first is spent the next one matches."""
    fs.add_fault("error500", path=r"^/v1/customers$", times=1)
    fs.add_fault("hang", path=r"^/v1/customers$", seconds=0)
    for expected in (500, 200, 200):
        response = requests.get(f"{fs.api_base}/v1/customers", auth=("sk_test_x", ""), timeout=5)
        assert response.status_code == expected
    assert [rule["fired"] for rule in fs.faults()] == [1, 2]


def test_delete_faults_clears_every_rule(fs):
    """DELETE /_faults removes all rules: requests pass again."""
    fs.add_fault("error500")
    fs.add_fault("drop", method="POST")
    assert len(fs.faults()) == 2
    fs.clear_faults()
    assert fs.faults() == []
    assert requests.get(f"{fs.api_base}/v1/customers", auth=("sk_test_x", ""), timeout=5).status_code == 200


def test_faults_never_hit_config_or_js(fs):
    """A rule matching every path still spares /_config, /_faults and the JS; only /v1/ is hit."""
    fs.add_fault("error500", path=".*")
    fs.flush()
    fs.register_webhook("http://127.0.0.1:9/hook", "whsec_x", name="faults-test", events=["payment_intent.canceled"])
    assert requests.get(f"{fs.api_base}/js.stripe.com/v3/", timeout=5).status_code == 200
    assert fs.faults()[0]["fired"] == 0
    assert requests.get(f"{fs.api_base}/v1/customers", auth=("sk_test_x", ""), timeout=5).status_code == 500
    assert fs.faults()[0]["fired"] == 1


def test_bad_fault_rules_are_refused(fs):
    """A rule with an unknown mode, field or a bad regex is a 400, not a rule that silently never fires."""
    for spec in ({"mode": "explode"}, {"mode": "hang", "secs": 1}, {"mode": "drop", "path": "("}):
        response = requests.post(f"{fs.api_base}/_faults", json=spec, timeout=5)
        assert response.status_code == 400, spec
    with pytest.raises(FakeStripeError):
        fs.add_fault("error500", probability=2)
    assert fs.faults() == []


# -- the launcher ---------------------------------------------------------------


def test_no_pickle_file_is_written(fs, client):
    """Writes and a flush leave /tmp/localstripe.pickle alone (absent, or unchanged)."""
    before = os.stat(PICKLE).st_mtime_ns if os.path.exists(PICKLE) else None
    pi = create_pi(client, "pickle-1")
    client.v1.payment_intents.cancel(pi.id)
    fs.flush()
    after = os.stat(PICKLE).st_mtime_ns if os.path.exists(PICKLE) else None
    assert after == before


def test_ready_line_and_list_paging(fs, client):
    """The launcher announces itself; FakeStripe.list follows has_more past 100 objects."""
    assert f"fakestripe listening on http://127.0.0.1:{fs.port}" in fs.log_tail()
    for i in range(105):
        raw_post(fs, "/v1/customers", {"email": f"c{i}@example.com"})
    customers = fs.list("customers")
    assert len(customers) == 105
    assert len({c["id"] for c in customers}) == 105


def _non_loopback_ipv4() -> str | None:
    # A UDP "connect" sends nothing; it only asks the kernel which local address routes out.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_listens_on_loopback_only(fs):
    """The server answers on 127.0.0.1 and refuses connections on the machine's other address."""
    with socket.create_connection(("127.0.0.1", fs.port), timeout=2):
        pass
    address = _non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with pytest.raises(OSError):
        socket.create_connection((address, fs.port), timeout=2).close()


def test_registered_webhook_receives_signed_events(fs, client):
    """register_webhook: localstripe posts payment_intent.succeeded, signed so the SDK verifies it."""
    with webhook_receiver() as (port, received):
        fs.register_webhook(f"http://127.0.0.1:{port}/hook", "whsec_test", events=["payment_intent.succeeded"])
        pi = create_pi(client, "hook-1", payment_method="pm_card_visa", confirm=True)
        assert pi.status == "succeeded"
        assert wait_for(lambda: received, timeout=5)
    _path, body, signature = received[0]
    event = stripe.Webhook.construct_event(body, signature, "whsec_test")
    assert event.type == "payment_intent.succeeded"
    assert json.loads(body)["data"]["object"]["id"] == pi.id


def test_manage_py_localstripe_serves_and_registers_the_sites_webhook():
    """`manage.py localstripe` listens on --port and sends signed events to SITE_URL/webhooks/stripe/."""
    port = free_port()
    with webhook_receiver() as (site_port, received):
        env = {**os.environ, "STRIPE_WEBHOOK_SECRET": "whsec_command_test", "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "localstripe",
                "--port",
                str(port),
                "--site-url",
                f"http://127.0.0.1:{site_port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            server = FakeStripe(port, process, log_dir=Path(tempfile.mkdtemp()))
            assert wait_for(lambda: _answers(server), timeout=10), "manage.py localstripe did not start"
            client = make_client(server)
            pi = create_pi(client, "command-1", payment_method="pm_card_visa", confirm=True)
            assert wait_for(lambda: received, timeout=5)
        finally:
            process.terminate()
            process.wait(timeout=10)
    path, body, signature = received[0]
    assert path == "/webhooks/stripe/"
    event = stripe.Webhook.construct_event(body, signature, "whsec_command_test")
    assert event.data.object.id == pi.id


def _answers(server: FakeStripe) -> bool:
    try:
        server.faults()
    except (OSError, FakeStripeError):
        return False
    return True
