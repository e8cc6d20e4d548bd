"""The contract's refund invariants, checked after every refund scenario."""

from payments.models import Payment
from refunds.models import Refund


def assert_refund_invariants(payment: Payment, *, at_stripe=None) -> None:
    """
    Assert the contract's invariants on `payment` as the database now holds it:
    0 <= refunded_amount <= amount_received <= amount; refunded_amount == sum of
    succeeded refunds; pending + requires_action + succeeded refunds <=
    amount_received; no Stripe refund recorded twice; a paid payment's status
    follows its refunded amount (refunded once all that was received is).

    With `at_stripe` (the `fake_stripe` fixture), once no refund is left waiting
    for Stripe's answer, also: every refund Stripe holds for the PaymentIntent is
    recorded here exactly once, and ours add up to the same amount.
    """
    payment.refresh_from_db()
    refunds = list(payment.refunds.all())
    succeeded = sum(r.amount for r in refunds if r.status == Refund.Status.SUCCEEDED)
    held = sum(r.amount for r in refunds if r.status in Refund.HOLDING)
    stripe_ids = [r.stripe_refund_id for r in refunds if r.stripe_refund_id]

    assert 0 <= payment.refunded_amount <= payment.amount_received <= payment.amount
    assert payment.refunded_amount == succeeded
    assert held <= payment.amount_received
    assert len(stripe_ids) == len(set(stripe_ids))
    assert not payment.books_mismatch
    if payment.status in Payment.PAID:
        expected = (
            Payment.Status.SUCCEEDED
            if succeeded == 0
            else Payment.Status.REFUNDED
            if succeeded == payment.amount_received
            else Payment.Status.PARTIALLY_REFUNDED
        )
        assert payment.status == expected

    if at_stripe is not None:
        made = at_stripe.list("refunds", payment_intent=payment.stripe_payment_intent_id)
        assert sorted(r["id"] for r in made) == sorted(stripe_ids)
        assert sum(r["amount"] for r in made if r["status"] == "succeeded") == succeeded
