"""
The local Stripe's layer for what localstripe lacks (devkit/stripe_extras.py):
parameters real Stripe takes and localstripe 1.15 refuses are accepted and echoed
in every answer about their object, `amount_received` and `amount_capturable`
are filled, charges say what the card is, a partial capture releases the rest
without a refund, and a wipe forgets it all.

One server for the module, emptied before each test, driven with the official
`stripe` SDK configured the way the app is. No Django.
"""

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import stripe
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devkit.fakestripe import FakeStripe
from devkit.stripe_extras import Extras, make_extras_middleware
from devkit.tests.helpers import make_client, wait_for, webhook_receiver

SHOPPER = "shopper@example.com"


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
    params = {"amount": 1000, "currency": "usd", **params}
    return client.v1.payment_intents.create(params=params, options={"idempotency_key": key})


def paid_pi(client: stripe.StripeClient, key: str, **params):
    return create_pi(client, key, payment_method="pm_card_visa", confirm=True, **params)


# -- PaymentIntents -------------------------------------------------------------


def test_create_takes_description_and_receipt_email_and_every_answer_shows_them(fs, client):
    """Create with description and receipt_email: 200, and create, retrieve, list, cancel all answer them."""
    pi = create_pi(client, "desc-1", description="Order 42", receipt_email=SHOPPER)
    assert (pi.description, pi.receipt_email) == ("Order 42", SHOPPER)

    retrieved = client.v1.payment_intents.retrieve(pi.id)
    assert (retrieved.description, retrieved.receipt_email) == ("Order 42", SHOPPER)
    [listed] = client.v1.payment_intents.list().data
    assert (listed.id, listed.description) == (pi.id, "Order 42")
    canceled = client.v1.payment_intents.cancel(pi.id, options={"idempotency_key": "desc-1-cancel"})
    assert (canceled.status, canceled.description) == ("canceled", "Order 42")


def test_shipping_and_statement_descriptors_are_taken_and_confirm_answers_them(fs, client):
    """Nested shipping[...] and both statement descriptors come back as sent, also from confirm."""
    shipping = {"name": "Ada Lovelace", "address": {"line1": "12 St James's Square", "city": "London"}}
    pi = create_pi(
        client,
        "ship-1",
        payment_method="pm_card_visa",
        shipping=shipping,
        statement_descriptor="PAYMENTSITE",
        statement_descriptor_suffix="ORDER 42",
    )
    confirmed = client.v1.payment_intents.confirm(pi.id, options={"idempotency_key": "ship-1-confirm"})
    assert confirmed.status == "succeeded"
    assert confirmed.to_dict()["shipping"] == shipping
    assert (confirmed.statement_descriptor, confirmed.statement_descriptor_suffix) == ("PAYMENTSITE", "ORDER 42")


def test_update_with_only_taken_parameters_and_empty_value_unsets(fs, client):
    """An update sending only a description answers 200 with it (localstripe alone refuses an empty update);
    an empty value sets it back to null, as at Stripe, and other fields are kept."""
    pi = create_pi(client, "upd-1", receipt_email=SHOPPER)
    updated = client.v1.payment_intents.update(
        pi.id, params={"description": "Order 43"}, options={"idempotency_key": "upd-1-a"}
    )
    assert (updated.id, updated.description, updated.receipt_email) == (pi.id, "Order 43", SHOPPER)

    cleared = client.v1.payment_intents.update(
        pi.id, params={"description": "", "metadata": {"step": "2"}}, options={"idempotency_key": "upd-1-b"}
    )
    assert cleared.description is None
    assert cleared.metadata.to_dict() == {"step": "2"}
    assert client.v1.payment_intents.retrieve(pi.id).receipt_email == SHOPPER


def test_fields_never_sent_answer_null_like_stripe(fs, client):
    """Made without them, a PaymentIntent answers description, shipping... as null, and a refund its reason."""
    pi = paid_pi(client, "null-1").to_dict()
    for name in ("description", "receipt_email", "shipping", "statement_descriptor", "statement_descriptor_suffix"):
        assert name in pi and pi[name] is None, name
    refund = client.v1.refunds.create(params={"payment_intent": pi["id"]}, options={"idempotency_key": "null-1-re"})
    assert "reason" in refund.to_dict() and refund.reason is None


def test_idempotency_fingerprint_sees_the_parameters_as_sent(fs, client):
    """The layer sits inside idempotency: the same key with another description is refused, with the same replayed."""
    first = create_pi(client, "fp-1", description="Order 42")
    with pytest.raises(stripe.IdempotencyError):
        create_pi(client, "fp-1", description="Order 43")
    replay = requests.post(
        f"{fs.api_base}/v1/payment_intents",
        data={"amount": "1000", "currency": "usd", "description": "Order 42"},
        headers={"Authorization": "Bearer sk_test_x", "Idempotency-Key": "fp-1"},
        timeout=5,
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (replay.json()["id"], replay.json()["description"]) == (first.id, "Order 42")
    assert len(fs.list("payment_intents")) == 1


def test_unauthenticated_update_is_still_refused(fs, client):
    """Taking parameters out never skips localstripe's own authentication (401 without a key)."""
    pi = create_pi(client, "auth-1")
    answer = requests.post(f"{fs.api_base}/v1/payment_intents/{pi.id}", data={"description": "x"}, timeout=5)
    assert answer.status_code == 401
    assert client.v1.payment_intents.retrieve(pi.id).description is None


# -- amount_received and amount_capturable ------------------------------------------


def test_amount_received_is_what_was_captured(fs, client):
    """Automatic capture: received = amount. Manual: 0 and capturable = amount, then the captured part after capture."""
    automatic = paid_pi(client, "recv-1", amount=2500)
    assert (automatic.status, automatic.amount_received, automatic.amount_capturable) == ("succeeded", 2500, 0)

    manual = paid_pi(client, "recv-2", amount=2500, capture_method="manual")
    assert (manual.status, manual.amount_received, manual.amount_capturable) == ("requires_capture", 0, 2500)
    captured = client.v1.payment_intents.capture(
        manual.id, params={"amount_to_capture": 1500}, options={"idempotency_key": "recv-2-capture"}
    )
    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 1500, 0)
    assert client.v1.payment_intents.retrieve(manual.id).amount_received == 1500

    unpaid = create_pi(client, "recv-3")
    assert (unpaid.amount_received, unpaid.amount_capturable) == (0, 0)


def test_a_partial_capture_releases_the_rest_without_a_refund(fs, client):
    """
    Authorized 10000, captured 6000: as at Stripe (2025-03-31 and later), no refund
    of the 4000 released is listed, by PaymentIntent or charge, nor counted in the
    charge's amount_refunded, and the balance history holds one charge of 6000. A
    refund of the captured part is then a refund like any other.
    """
    pi = paid_pi(client, "rel-1", amount=10_000, capture_method="manual")
    captured = client.v1.payment_intents.capture(
        pi.id, params={"amount_to_capture": 6000}, options={"idempotency_key": "rel-1-capture"}
    )
    charge = captured.latest_charge
    assert (charge.amount, charge.amount_captured, charge.amount_refunded, charge.refunded) == (10_000, 6000, 0, False)
    assert charge.to_dict()["refunds"]["data"] == []
    assert fs.list("refunds", payment_intent=pi.id) == []
    assert fs.list("refunds") == []
    history = client.v1.balance_transactions.list().data
    assert [(t.type, t.amount) for t in history] == [("charge", 6000)]

    refund = client.v1.refunds.create(params={"payment_intent": pi.id}, options={"idempotency_key": "rel-1-re"})
    assert [r["id"] for r in fs.list("refunds", payment_intent=pi.id)] == [refund.id]
    charge = client.v1.payment_intents.retrieve(pi.id).latest_charge
    assert (charge.amount_refunded, charge.refunded) == (refund.amount, refund.amount >= 6000)


def test_a_full_capture_and_a_void_leave_no_refund_either(fs, client):
    """Captured in full: nothing to release. Voided: the charge stays uncaptured, with nothing captured or refunded."""
    full = paid_pi(client, "rel-2", amount=2500, capture_method="manual")
    client.v1.payment_intents.capture(full.id, options={"idempotency_key": "rel-2-capture"})
    voided = paid_pi(client, "rel-3", amount=2500, capture_method="manual")
    canceled = client.v1.payment_intents.cancel(voided.id, options={"idempotency_key": "rel-3-cancel"})
    assert (canceled.status, canceled.amount_received, canceled.amount_capturable) == ("canceled", 0, 0)
    charge = canceled.latest_charge
    assert (charge.captured, charge.amount_captured, charge.amount_refunded, charge.refunded) == (False, 0, 0, False)
    assert fs.list("refunds") == []


def test_only_an_authorized_payment_intent_can_be_captured(fs, client):
    """Voided, or captured already: 400 payment_intent_unexpected_state, as at Stripe, and nothing changes."""
    voided = paid_pi(client, "cap-1", capture_method="manual")
    client.v1.payment_intents.cancel(voided.id, options={"idempotency_key": "cap-1-cancel"})
    captured = paid_pi(client, "cap-2", capture_method="manual")
    client.v1.payment_intents.capture(captured.id, options={"idempotency_key": "cap-2-capture"})

    for intent, key in ((voided, "cap-1-capture"), (captured, "cap-2-again")):
        with pytest.raises(stripe.InvalidRequestError) as excinfo:
            client.v1.payment_intents.capture(intent.id, options={"idempotency_key": key})
        assert (excinfo.value.http_status, excinfo.value.code) == (400, "payment_intent_unexpected_state")
    after = client.v1.payment_intents.retrieve(voided.id)
    assert (after.status, after.amount_received, after.latest_charge.captured) == ("canceled", 0, False)


def test_charges_say_what_the_card_is_and_until_when_it_may_be_captured(fs, client):
    """payment_method_details.card: brand and last 4 always; capture_before, 7 days on, for a manual capture."""
    manual = paid_pi(client, "card-1", capture_method="manual").latest_charge
    card = manual.payment_method_details.card
    assert (manual.payment_method_details.type, card.brand, card.last4) == ("card", "visa", "4242")
    assert card.capture_before == manual.created + 7 * 86400
    automatic = paid_pi(client, "card-2").latest_charge.payment_method_details.card
    assert (automatic.last4, automatic.capture_before) == ("4242", None)


# -- Refunds ----------------------------------------------------------------------


def test_refund_with_reason_answers_200_and_echoes_it(fs, client):
    """A refund with reason (and instructions_email) is made; create, retrieve and list answer the reason."""
    pi = paid_pi(client, "ref-1")
    refund = client.v1.refunds.create(
        params={
            "payment_intent": pi.id,
            "amount": 300,
            "reason": "requested_by_customer",
            "instructions_email": SHOPPER,
        },
        options={"idempotency_key": "ref-1-re"},
    )
    assert (refund.status, refund.amount, refund.reason) == ("succeeded", 300, "requested_by_customer")
    assert refund.to_dict()["instructions_email"] == SHOPPER
    assert client.v1.refunds.retrieve(refund.id).reason == "requested_by_customer"
    [listed] = client.v1.refunds.list(params={"payment_intent": pi.id}).data
    assert (listed.id, listed.reason) == (refund.id, "requested_by_customer")


def test_refund_reason_outside_stripes_values_is_refused(fs, client):
    """Like Stripe, a reason other than duplicate, fraudulent or requested_by_customer is a 400 and no refund."""
    pi = paid_pi(client, "ref-2")
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.refunds.create(
            params={"payment_intent": pi.id, "amount": 300, "reason": "changed_mind"},
            options={"idempotency_key": "ref-2-re"},
        )
    assert (excinfo.value.http_status, excinfo.value.param) == (400, "reason")
    assert fs.list("refunds", payment_intent=pi.id) == []


# -- Webhooks and wiping --------------------------------------------------------------


def test_webhooks_localstripe_sends_carry_the_fields(fs, client):
    """payment_intent.succeeded, sent by localstripe itself, carries the description and amount_received."""

    def ours() -> list[dict]:
        # Events of earlier tests' intents may still be on their way: only this intent's count.
        intents = [json.loads(body)["data"]["object"] for _path, body, _signature in received]
        return [intent for intent in intents if intent["id"] == pi.id]

    with webhook_receiver() as (port, received):
        fs.register_webhook(f"http://127.0.0.1:{port}/hook", "whsec_test", events=["payment_intent.succeeded"])
        pi = paid_pi(client, "hook-1", description="Order 42")
        assert wait_for(ours, timeout=5)
    fs.register_webhook(f"http://127.0.0.1:{port}/hook", "whsec_test", events=[])
    [intent] = ours()
    assert (intent["description"], intent["amount_received"]) == ("Order 42", 1000)


def test_wiping_forgets_what_the_layer_remembered():
    """
    After DELETE /_config/data nothing is put back into an answer about an id the
    layer was told about. localstripe never gives an id twice, so this runs the
    layer in-process in front of a stand-in that does, and that also shows what
    localstripe gets to read: the form without the taken parameters.
    """
    seen: list[dict[str, str]] = []
    intent = {"object": "payment_intent", "id": "pi_same", "amount": 1000, "status": "requires_payment_method"}

    @web.middleware
    async def read_form_first(request, handler):
        await request.post()  # as localstripe's authentication does, before the layer
        return await handler(request)

    async def create(request):
        seen.append(dict(await request.post()))
        return web.json_response(intent)

    async def retrieve(request):
        return web.json_response(intent)

    async def wipe(request):
        return web.json_response({"deleted": True})

    async def scenario() -> tuple[str | None, str | None]:
        app = web.Application(middlewares=[read_form_first, web.middleware(make_extras_middleware(Extras()))])
        app.router.add_post("/v1/payment_intents", create)
        app.router.add_get("/v1/payment_intents/{id}", retrieve)
        app.router.add_delete("/_config/data", wipe)
        async with TestClient(TestServer(app)) as http:
            form = {"amount": "1000", "currency": "usd", "description": "Order 42"}
            await http.post("/v1/payment_intents", data=form)
            before = (await (await http.get("/v1/payment_intents/pi_same")).json())["description"]
            await http.delete("/_config/data")
            after = (await (await http.get("/v1/payment_intents/pi_same")).json())["description"]
        return before, after

    # In a thread of its own: after a browser test, Playwright's event loop runs in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        before, after = pool.submit(lambda: asyncio.run(scenario())).result(timeout=30)
    assert seen == [{"amount": "1000", "currency": "usd"}]
    assert (before, after) == ("Order 42", None)
