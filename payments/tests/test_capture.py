"""
Authorize now, capture later, against the local Stripe: `capture_method: manual`
on create, `POST /api/payments/{id}/capture/` (all, or part: the rest is released,
never refunded), refunds of the captured part only, and the void
(`POST /api/payments/{id}/cancel/` of an authorized payment).
"""

import threading

import pytest
from django.db import connection
from django.utils import timezone

import core.stripe_gateway as stripe_gateway
from payments.models import Payment
from payments.tests.factories import api_client_for, authorized_payment, create_payment
from refunds.models import Refund
from refunds.services import payment_refundable_amount
from refunds.tests.factories import request_refund
from refunds.tests.invariants import assert_refund_invariants

CAPTURE_AT_STRIPE = r"/v1/payment_intents/pi_\w+/capture$"


def capture(client, payment, body=None, key="capture-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(f"/api/payments/{payment.pk}/capture/", body or {}, format="json", **headers)


@pytest.mark.django_db
def test_an_authorization_holds_the_amount_without_receiving_it(owner_api, fake_stripe):
    """requires_capture: capturable = amount, nothing received, nothing refundable, until when it may be captured."""
    payment = authorized_payment(owner_api, amount=10_000)

    body = owner_api.get(f"/api/payments/{payment.pk}/").json()

    assert (body["status"], body["capture_method"]) == ("requires_capture", "manual")
    assert (body["amount"], body["amount_capturable"], body["amount_received"]) == (10_000, 10_000, 0)
    assert body["capture_before"] is not None
    assert (body["card_brand"], body["card_last4"]) == ("visa", "4242")
    assert payment_refundable_amount(payment=payment) == 0


@pytest.mark.django_db
def test_an_authorization_cannot_be_refunded_nothing_was_taken(owner_api, staff_api, fake_stripe):
    payment = authorized_payment(owner_api)

    response = request_refund(staff_api, payment)

    assert (response.status_code, response.json()["code"]) == (409, "not_refundable")
    assert "Capture it, or void it instead" in response.json()["detail"]
    assert fake_stripe.list("refunds") == []


@pytest.mark.django_db
def test_a_full_capture_receives_the_whole_amount(owner_api, fake_stripe):
    payment = authorized_payment(owner_api, amount=10_000)

    response = capture(owner_api, payment)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["amount_received"], body["amount_capturable"]) == ("succeeded", 10_000, 0)
    intent = stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 10_000)


@pytest.mark.django_db
def test_a_partial_capture_receives_only_that_part_and_only_it_can_be_refunded(owner_api, staff_api, fake_stripe):
    """
    Authorized 10000, captured 6000: received 6000, the 4000 released (no refund,
    here or at Stripe); the refundable amount is 6000, "refund all" sends 6000,
    and the payment is then refunded.
    """
    payment = authorized_payment(owner_api, amount=10_000)

    body = capture(owner_api, payment, {"amount": 6000}).json()

    assert (body["status"], body["amount"], body["amount_received"]) == ("succeeded", 10_000, 6000)
    payment.refresh_from_db()
    assert payment_refundable_amount(payment=payment) == 6000
    assert fake_stripe.list("refunds", payment_intent=payment.stripe_payment_intent_id) == []
    assert not Refund.objects.exists()

    too_much = request_refund(staff_api, payment, {"amount": 6001}, key="too-much")
    assert too_much.status_code == 400 and too_much.json()["refundable_amount"] == 6000

    everything = request_refund(staff_api, payment, key="all")
    assert everything.status_code == 201 and everything.json()["amount"] == 6000
    [at_stripe] = fake_stripe.list("refunds", payment_intent=payment.stripe_payment_intent_id)
    assert at_stripe["amount"] == 6000
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount, payment.amount_received) == (Payment.Status.REFUNDED, 6000, 6000)
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
def test_a_void_releases_the_authorization_and_refunds_nothing(owner_api, fake_stripe):
    payment = authorized_payment(owner_api, amount=10_000)

    response = owner_api.post(f"/api/payments/{payment.pk}/cancel/")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["amount_received"], body["amount_capturable"], body["refunded_amount"]) == (
        "canceled",
        0,
        0,
        0,
    )
    assert stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)["status"] == "canceled"
    assert fake_stripe.list("refunds") == []
    assert not Refund.objects.exists()
    assert capture(owner_api, payment).json()["code"] == "not_capturable"


@pytest.mark.django_db
def test_the_same_key_replays_and_another_amount_under_it_is_422(owner_api, fake_stripe):
    payment = authorized_payment(owner_api)
    first = capture(owner_api, payment, {"amount": 2500})

    again = capture(owner_api, payment, {"amount": 2500})
    other = capture(owner_api, payment, {"amount": 3000})
    new_key = capture(owner_api, payment, {"amount": 3000}, key="capture-2")

    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert (new_key.status_code, new_key.json()["code"]) == (409, "not_capturable")
    payment.refresh_from_db()
    assert payment.amount_received == 2500


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "code"),
    [(10_001, "capture_amount_invalid"), (0, "capture_amount_invalid"), (-5, "capture_amount_invalid")],
)
def test_an_amount_outside_what_is_capturable_is_refused_and_nothing_moves(owner_api, fake_stripe, amount, code):
    payment = authorized_payment(owner_api, amount=10_000)

    response = capture(owner_api, payment, {"amount": amount})

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert response.json()["amount_capturable"] == 10_000
    intent = stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)
    assert intent["status"] == "requires_capture"
    # Refused before Stripe was asked: the key is free for a corrected request.
    assert capture(owner_api, payment, {"amount": 4000}).json()["amount_received"] == 4000


@pytest.mark.django_db
def test_bad_requests_are_400_and_someone_elses_payment_404(owner_api, outsider_api, fake_stripe):
    payment = authorized_payment(owner_api)

    assert capture(owner_api, payment, key=None).status_code == 400
    assert capture(owner_api, payment, {"amount": "2500"}).status_code == 400
    assert capture(outsider_api, payment).status_code == 404
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_CAPTURE


@pytest.mark.django_db
def test_a_payment_not_authorized_is_409_not_capturable(owner_api, fake_stripe):
    """Automatic capture, still unpaid: nothing to capture, and Stripe is not asked."""
    payment = create_payment(owner_api)

    response = capture(owner_api, payment)

    assert response.status_code == 409
    assert (response.json()["code"], response.json()["status"]) == ("not_capturable", "requires_payment_method")


@pytest.mark.django_db
def test_voided_at_stripe_meanwhile_is_recorded_and_409(owner_api, fake_stripe):
    """Voided in Stripe's dashboard before any webhook: Stripe refuses the capture, and we learn the truth."""
    payment = authorized_payment(owner_api)
    stripe_gateway.payment_intent_cancel(payment.stripe_payment_intent_id, idempotency_key="dashboard-void")

    response = capture(owner_api, payment)

    assert (response.status_code, response.json()["code"]) == (409, "not_capturable")
    payment.refresh_from_db()
    assert (payment.status, payment.amount_received, payment.capture_started_at) == (Payment.Status.CANCELED, 0, None)


@pytest.mark.django_db
def test_stripe_failing_leaves_it_authorized_and_the_retry_captures_once(owner_api, fake_stripe):
    payment = authorized_payment(owner_api, amount=10_000)
    fake_stripe.add_fault("drop", method="POST", path=CAPTURE_AT_STRIPE, times=1)

    lost = capture(owner_api, payment, {"amount": 7000})

    assert lost.status_code == 503
    payment.refresh_from_db()
    assert (payment.status, payment.capture_started_at) == (Payment.Status.REQUIRES_CAPTURE, None)
    # The capture was made at Stripe, its answer lost: the same key gets Stripe's first answer.
    retried = capture(owner_api, payment, {"amount": 7000})
    assert retried.status_code == 200 and retried.json()["amount_received"] == 7000
    assert stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)["amount_received"] == 7000


@pytest.mark.django_db(transaction=True)
def test_concurrent_captures_with_one_key_make_one_capture(owner, fake_stripe):
    """
    Eight simultaneous requests with one key, each in its own connection: one
    reaches Stripe (each capture call is held there half a second, and counted);
    the others answer 409 while it runs, or replay its answer.
    """
    payment = authorized_payment(api_client_for(owner), amount=10_000)
    fake_stripe.add_fault("hang", method="POST", path=CAPTURE_AT_STRIPE, seconds=0.5)
    start = threading.Barrier(8)
    answers = []

    def request_capture():
        try:
            client = api_client_for(owner)
            start.wait()
            response = capture(client, payment, {"amount": 6000}, key="ship-order-42")
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=request_capture) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    [rule] = fake_stripe.faults()
    assert rule["fired"] == 1
    assert {code for code, _ in answers} <= {200, 409}
    assert [body["amount_received"] for code, body in answers if code == 200] != []
    assert {body["code"] for code, body in answers if code == 409} <= {"idempotency_key_in_use"}
    payment.refresh_from_db()
    assert (payment.status, payment.amount_received) == (Payment.Status.SUCCEEDED, 6000)
    assert capture(api_client_for(owner), payment, {"amount": 6000}, key="ship-order-42").status_code == 200


@pytest.mark.django_db
def test_a_capture_by_another_request_still_running_is_409(owner_api, fake_stripe):
    """A second key while the first key's capture holds its lease: not captured twice, 409."""
    payment = authorized_payment(owner_api)
    Payment.objects.filter(pk=payment.pk).update(
        capture_idempotency_key="first", capture_request_fingerprint="x", capture_started_at=timezone.now()
    )

    response = capture(owner_api, payment, key="second")

    assert (response.status_code, response.json()["code"]) == (409, "not_capturable")
    assert stripe_gateway.payment_intent_retrieve(payment.stripe_payment_intent_id)["status"] == "requires_capture"


@pytest.mark.django_db
def test_three_decimal_captures_end_in_zero(owner_api, fake_stripe):
    """KWD 5.120 authorized: capturing 2.005 is refused (Stripe takes only amounts ending in 0), 2.010 is taken."""
    payment = authorized_payment(owner_api, amount=5120, currency="kwd")

    refused = capture(owner_api, payment, {"amount": 2005})
    taken = capture(owner_api, payment, {"amount": 2010}, key="capture-2")

    assert (refused.status_code, refused.json()["code"]) == (400, "capture_amount_invalid")
    assert taken.json()["amount_received"] == 2010


@pytest.mark.django_db
def test_an_authorized_payment_takes_no_card_any_more(owner_api, fake_stripe):
    payment = authorized_payment(owner_api)

    response = owner_api.post(f"/api/payments/{payment.pk}/confirm/", {"payment_method": "pm_card_visa"}, format="json")

    assert response.status_code == 409
