import pytest

from refunds.tests.factories import paid_payment_at_stripe


@pytest.fixture
def paid_payment(owner_api, fake_stripe):
    """`paid_payment(amount=...)`: the owner's payment, paid at the local Stripe."""

    def make(amount: int = 10_000, currency: str = "usd"):
        return paid_payment_at_stripe(owner_api, amount=amount, currency=currency)

    return make
