"""payment_intent.* events move the payment they name, found by our id or Stripe's; unknown intents are adopted."""

import time

import pytest

from payments.models import Payment
from payments.tests.factories import PaymentFactory
from webhooks.models import WebhookEvent
from webhooks.tests.factories import (
    LOCALSTRIPE_API_VERSION,
    payment_intent_event,
    payment_intent_object,
    post_event,
    stripe_event,
)


@pytest.fixture
def payment(owner):
    return PaymentFactory(user=owner, amount=2500, currency="eur")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("payment_intent.created", Payment.Status.REQUIRES_PAYMENT_METHOD),
        ("payment_intent.processing", Payment.Status.PROCESSING),
        ("payment_intent.requires_action", Payment.Status.REQUIRES_ACTION),
        ("payment_intent.succeeded", Payment.Status.SUCCEEDED),
        ("payment_intent.payment_failed", Payment.Status.FAILED),
        ("payment_intent.canceled", Payment.Status.CANCELED),
        ("payment_intent.amount_capturable_updated", Payment.Status.REQUIRES_CAPTURE),
    ],
)
def test_each_payment_intent_event_sets_its_status(client, payment, event_type, status):
    response = post_event(client, payment_intent_event(event_type, payment))

    assert response.status_code == 200
    assert response.json() == {"received": True}
    payment.refresh_from_db()
    assert payment.status == status
    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookEvent.Outcome.PROCESSED
    assert stored.payment == payment
    assert stored.object_id == payment.stripe_payment_intent_id


@pytest.mark.django_db
def test_payment_failed_keeps_the_decline_and_is_not_final(client, payment):
    """The customer may try another card: a later success still applies."""
    now = int(time.time())
    post_event(client, payment_intent_event("payment_intent.payment_failed", payment, created=now - 10))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED
    assert payment.failure_code == "generic_decline"
    assert payment.failure_message == "Your card was declined."

    post_event(client, payment_intent_event("payment_intent.succeeded", payment, created=now))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.failure_code == ""


@pytest.mark.django_db
def test_a_late_event_never_takes_a_succeeded_payment_back(client, payment):
    now = int(time.time())
    post_event(client, payment_intent_event("payment_intent.succeeded", payment, created=now))

    for event_type in ("payment_intent.created", "payment_intent.processing", "payment_intent.payment_failed"):
        assert post_event(client, payment_intent_event(event_type, payment, created=now - 5)).status_code == 200

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED


@pytest.mark.django_db
@pytest.mark.parametrize("final", ["payment_intent.succeeded", "payment_intent.canceled"])
def test_a_terminal_state_is_never_left_even_for_news_stamped_later(client, payment, final):
    """
    Our clock stamps what Stripe answered us, Stripe's clock stamps its events: with
    any skew a non-final event can carry a later time than the success we recorded.
    The terminal state holds regardless, and the same-second tie changes nothing.
    """
    now = int(time.time())
    post_event(client, payment_intent_event(final, payment, created=now))
    terminal = Payment.objects.get(pk=payment.pk).status

    for offset, event_type in enumerate(("payment_intent.processing", "payment_intent.requires_action")):
        assert post_event(client, payment_intent_event(event_type, payment, created=now + offset)).status_code == 200

    payment.refresh_from_db()
    assert payment.status == terminal


@pytest.mark.django_db
def test_an_older_non_final_event_does_not_overwrite_a_newer_one(client, payment):
    now = int(time.time())
    post_event(client, payment_intent_event("payment_intent.requires_action", payment, created=now))
    post_event(client, payment_intent_event("payment_intent.payment_failed", payment, created=now - 3))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_ACTION


@pytest.mark.django_db
def test_the_payment_is_found_by_the_paymentintent_id_when_metadata_is_missing(client, payment):
    intent = payment_intent_object(intent_id=payment.stripe_payment_intent_id, status="processing", amount=2500)

    post_event(client, stripe_event("payment_intent.processing", intent))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.PROCESSING
    assert Payment.objects.count() == 1


@pytest.mark.django_db
def test_an_event_reaching_us_before_stripes_answer_finds_the_payment_by_metadata(client, owner):
    """The row is written before Stripe is called; its PaymentIntent id may not be recorded yet."""
    payment = PaymentFactory(user=owner, stripe_payment_intent_id=None)

    post_event(client, payment_intent_event("payment_intent.created", payment, intent_id="pi_early"))

    payment.refresh_from_db()
    assert payment.stripe_payment_intent_id == "pi_early"
    assert Payment.objects.count() == 1


@pytest.mark.django_db
def test_a_paymentintent_the_app_never_made_is_adopted_with_no_user(client):
    event = payment_intent_event(
        "payment_intent.succeeded", intent_id="pi_from_dashboard", amount=4200, currency="gbp", metadata={"o": "7"}
    )

    post_event(client, event)

    payment = Payment.objects.get(stripe_payment_intent_id="pi_from_dashboard")
    assert payment.user is None
    assert (payment.amount, payment.currency, payment.status) == (4200, "gbp", Payment.Status.SUCCEEDED)
    assert payment.metadata == {"o": "7"}


@pytest.mark.django_db
def test_copied_metadata_does_not_move_a_payment_that_has_another_paymentintent(client, payment):
    """A PaymentIntent duplicated in the dashboard carries our payment id, but it is another payment."""
    event = payment_intent_event(
        "payment_intent.succeeded", intent_id="pi_copy", metadata={"payment_id": str(payment.id)}
    )

    post_event(client, event)

    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD
    assert Payment.objects.get(stripe_payment_intent_id="pi_copy").user is None


@pytest.mark.django_db
def test_localstripes_old_api_shape_is_understood(client, payment):
    """API 2017-08-15: `requires_source`, and `latest_charge` embedded as an object."""
    now = int(time.time())
    failed = payment_intent_object(
        payment=payment,
        status="requires_source",
        last_payment_error={"code": "card_declined", "message": "Declined"},
        latest_charge={"id": "ch_1", "object": "charge", "status": "failed"},
    )
    post_event(
        client,
        stripe_event("payment_intent.payment_failed", failed, api_version=LOCALSTRIPE_API_VERSION, created=now - 1),
    )
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED
    assert payment.failure_code == "card_declined"

    succeeded = payment_intent_object(payment=payment, status="succeeded", latest_charge={"id": "ch_2"})
    post_event(
        client, stripe_event("payment_intent.succeeded", succeeded, api_version=LOCALSTRIPE_API_VERSION, created=now)
    )
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
