"""refund_create as the admin calls it: its answers and errors without the API in front."""

import pytest

from core.exceptions import DomainError, NotRefundable, RefundAmountInvalid
from refunds.models import Refund
from refunds.services import refund_create
from refunds.tests.invariants import assert_refund_invariants


@pytest.mark.django_db
def test_refund_create_answers_the_refund_and_whether_it_was_replayed(staff, paid_payment, fake_stripe):
    payment = paid_payment(amount=10_000)

    first, first_replayed = refund_create(
        payment=payment, amount=None, note="Goodwill", created_by=staff, idempotency_key="admin-1"
    )
    again, again_replayed = refund_create(
        payment=payment, amount=None, note="Goodwill", created_by=staff, idempotency_key="admin-1"
    )

    assert (first_replayed, again_replayed) == (False, True)
    assert again.pk == first.pk and first.amount == 10_000 and first.status == Refund.Status.SUCCEEDED
    assert_refund_invariants(payment, at_stripe=fake_stripe)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes, error",
    [({"amount": 0}, RefundAmountInvalid), ({"amount": -5}, RefundAmountInvalid), ({"reason": "bored"}, DomainError)],
)
def test_refund_create_refuses_what_the_form_might_let_through(staff, paid_payment, fake_stripe, changes, error):
    payment = paid_payment(amount=10_000)

    with pytest.raises(error):
        refund_create(payment=payment, created_by=staff, idempotency_key="k", **{"amount": None, **changes})

    assert not Refund.objects.exists()
    assert fake_stripe.list("refunds") == []


@pytest.mark.django_db
def test_the_amount_error_carries_what_is_left_and_nothing_left_is_not_refundable(staff, paid_payment, fake_stripe):
    payment = paid_payment(amount=10_000)
    refund_create(payment=payment, amount=7000, created_by=staff, idempotency_key="a")

    with pytest.raises(RefundAmountInvalid) as raised:
        refund_create(payment=payment, amount=3001, created_by=staff, idempotency_key="b")

    assert raised.value.extra == {"refundable_amount": 3000}
    rest, _ = refund_create(payment=payment, amount=None, created_by=staff, idempotency_key="c")
    assert rest.amount == 3000
    with pytest.raises(NotRefundable):
        refund_create(payment=payment, amount=None, created_by=staff, idempotency_key="d")
    assert_refund_invariants(payment, at_stripe=fake_stripe)
