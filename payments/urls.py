from django.urls import path

from payments import api

urlpatterns = [
    path("payments/", api.PaymentListCreateView.as_view(), name="payment-list"),
    path("payments/<uuid:payment_id>/", api.PaymentDetailView.as_view(), name="payment-detail"),
    path("payments/<uuid:payment_id>/cancel/", api.PaymentCancelView.as_view(), name="payment-cancel"),
    path("payments/<uuid:payment_id>/capture/", api.PaymentCaptureView.as_view(), name="payment-capture"),
]
