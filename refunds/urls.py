from django.urls import path

from refunds import api

urlpatterns = [
    path("payments/<uuid:payment_id>/refunds/", api.PaymentRefundsView.as_view(), name="payment-refunds"),
]
