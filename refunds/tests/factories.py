import factory

from payments.models import Payment
from payments.tests.factories import PaymentFactory
from refunds.models import Refund


class PaidPaymentFactory(PaymentFactory):
    """A payment whose PaymentIntent has succeeded: refundable."""

    status = Payment.Status.SUCCEEDED


class RefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Refund

    payment = factory.SubFactory(PaidPaymentFactory)
    amount = 500
    status = Refund.Status.PENDING
    idempotency_key = factory.Sequence(lambda n: f"refund-key-{n}")
