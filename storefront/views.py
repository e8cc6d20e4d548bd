"""
The demo checkout: a page where a signed-in customer pays by card through
Stripe.js and our API, and the order's status page. The storefront usually
lives elsewhere; these pages show the whole chain working (page, API, Stripe,
webhook, database, admin). How the payment page works, and how it changes for
real Stripe, is written down in templates/checkout/checkout.html.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.shortcuts import get_object_or_404, render
from django.urls import path

from payments.api import PaymentSerializer
from payments.currencies import CURRENCIES, format_amount
from payments.models import Payment
from refunds.api import RefundSerializer
from storefront import api as checkout_api
from webhooks.models import WebhookEvent

# Something to buy without typing an amount: (name, amount in minor units, currency).
DEMO_PRODUCTS = [
    ("Coffee beans, 1 kg", 2400, "usd"),
    ("Linen apron", 3900, "eur"),
    ("Cast-iron teapot", 5500, "gbp"),
    ("Matcha tin", 3200, "jpy"),
]


# What each status means to the customer: (headline, explanation).
STATUS_TEXT = {
    Payment.Status.REQUIRES_PAYMENT_METHOD: ("Awaiting payment", "No card has been charged yet."),
    Payment.Status.REQUIRES_CONFIRMATION: ("Awaiting payment", "No card has been charged yet."),
    Payment.Status.REQUIRES_ACTION: ("Waiting for 3-D Secure", "Your bank asked you to confirm this payment."),
    Payment.Status.PROCESSING: ("Processing", "Stripe is processing the payment."),
    Payment.Status.REQUIRES_CAPTURE: (
        "Authorized",
        "The amount is reserved on your card; it is charged when your order ships.",
    ),
    Payment.Status.SUCCEEDED: ("Paid", "Thank you: your card has been charged."),
    Payment.Status.FAILED: ("Declined", "Your card has not been charged."),
    Payment.Status.CANCELED: ("Canceled", "You have not been charged."),
    Payment.Status.PARTIALLY_REFUNDED: ("Partially refunded", "Part of the amount has been refunded to your card."),
    Payment.Status.REFUNDED: ("Refunded", "The whole amount has been refunded to your card."),
}


@login_required
def checkout(request):
    return render(
        request,
        "checkout/checkout.html",
        {
            "stripe_js_url": settings.STRIPE_JS_URL,
            "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
            "products": [
                {"name": name, "amount": amount, "currency": currency, "display": CURRENCIES[currency].format(amount)}
                for name, amount, currency in DEMO_PRODUCTS
            ],
            "currencies": {code: currency.decimals for code, currency in CURRENCIES.items()},
        },
    )


@login_required
def order_status(request, payment_id):
    """The payment as our database holds it; the page polls the API until it changes."""
    payment = get_object_or_404(Payment, pk=payment_id, user=request.user)
    webhook_events = WebhookEvent.objects.none()
    if payment.stripe_payment_intent_id:
        webhook_events = WebhookEvent.objects.filter(
            Q(payment=payment) | Q(object_id=payment.stripe_payment_intent_id)
        ).order_by("received_at")
    refunds = list(payment.refunds.order_by("created_at"))
    return render(
        request,
        "checkout/status.html",
        {
            "payment": payment,
            "headline": STATUS_TEXT[payment.status][0],
            "explanation": STATUS_TEXT[payment.status][1],
            # What the API answers now: the page polls it and reloads when an answer changes.
            "api_state": {
                "payment": PaymentSerializer(payment).data,
                "refunds": RefundSerializer(refunds, many=True).data,
            },
            "refunded_display": format_amount(payment.refunded_amount, payment.currency),
            "capturable_display": format_amount(payment.amount_capturable, payment.currency),
            "charged_display": format_amount(payment.amount_received, payment.currency)
            if payment.amount_received
            else "",
            "released_display": format_amount(payment.uncaptured_amount, payment.currency)
            if payment.uncaptured_amount
            else "",
            "refunds": [
                {
                    "amount": format_amount(refund.amount, payment.currency),
                    "status": refund.status,
                    "at": refund.created_at,
                }
                for refund in refunds
            ],
            "webhook_events": webhook_events,
        },
    )


urlpatterns = [
    path("", checkout, name="checkout"),
    path("<uuid:payment_id>/", order_status, name="checkout-status"),
]

api_urlpatterns = [
    path(
        "payments/<uuid:payment_id>/setup-intent/",
        checkout_api.PaymentSetupIntentView.as_view(),
        name="payment-setup-intent",
    ),
    path("payments/<uuid:payment_id>/confirm/", checkout_api.PaymentConfirmView.as_view(), name="payment-confirm"),
]
