"""
The support desk's capture and void of an authorized payment
(`/admin/payments/payment/<id>/capture/` and `.../void/`): an amount (all of it by
default), a confirmation page, then `payments.services.payment_capture` or
`payment_cancel`, the API's own services. Staff need `payments.capture_payment`.
"""

import uuid
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from core.exceptions import DomainError
from core.stripe_gateway import StripeError
from payments import services as payment_services
from payments.currencies import Currency, get_currency
from payments.models import Payment

CAPTURE_PERMISSION = "payments.capture_payment"


class CaptureForm(forms.Form):
    """
    The amount in the currency's units ("60.00"), cleaned to minor units; `token`
    is minted when the form is first shown and becomes the capture's idempotency
    key, so the same form sent twice captures once.
    """

    token = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, currency: Currency, capturable: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.capturable = capturable
        self.fields["amount"] = forms.DecimalField(
            label=f"Amount to capture ({currency.code.upper()})",
            decimal_places=currency.decimals,
            min_value=Decimal(1).scaleb(-currency.decimals),
            help_text=f"At most {currency.format(capturable)}, all that is authorized. The rest is released.",
        )
        self.order_fields(["amount", "token"])

    @classmethod
    def initial_for(cls, currency: Currency, capturable: int) -> dict:
        return {"amount": currency.to_units(capturable), "token": uuid.uuid4().hex}

    def clean_amount(self) -> int:
        minor = self.currency.to_minor(self.cleaned_data["amount"])
        if minor > self.capturable:
            raise ValidationError(f"That is more than is authorized: at most {self.currency.format(self.capturable)}.")
        if minor % self.currency.step:
            step = self.currency.format(self.currency.step)
            raise ValidationError(f"{self.currency.code.upper()} amounts must be a multiple of {step}.")
        return minor


class AuthorizationView(View):
    """What capture and void share: the payment, the permission, the page."""

    model_admin = None
    template_name = "admin/payments/payment/capture.html"
    action = ""

    def dispatch(self, request, object_id):
        self.payment = get_object_or_404(Payment.objects.select_related("user"), pk=object_id)
        if not self.model_admin.can_capture(request, self.payment):
            raise PermissionDenied
        self.currency = get_currency(self.payment.currency)
        if not self.payment.is_authorized and request.method == "GET":
            messages.error(request, f"Only an authorized payment can be {self.action}d: this one is {self.status()}.")
            return redirect(self.payment_url())
        return super().dispatch(request, object_id)

    def status(self) -> str:
        return self.payment.status.replace("_", " ")

    def payment_url(self) -> str:
        return reverse("admin:payments_payment_change", args=[self.payment.pk])

    def render(self, context: dict, status: int = 200):
        context = {
            **self.model_admin.admin_site.each_context(self.request),
            "opts": Payment._meta,
            "title": f"{self.action.capitalize()} payment {self.payment.stripe_payment_intent_id or self.payment.pk}",
            "payment": self.payment,
            "payment_url": self.payment_url(),
            "action": self.action,
            "capturable": self.currency.format(self.payment.amount_capturable),
            **context,
        }
        return TemplateResponse(self.request, self.template_name, context, status=status)

    def log(self, message: str) -> None:
        self.model_admin.log_change(self.request, self.payment, message)


class CaptureView(AuthorizationView):
    """GET: the form. POST: the confirmation page; POST with `confirm`: the capture."""

    action = "capture"

    def form(self, **kwargs) -> CaptureForm:
        return CaptureForm(currency=self.currency, capturable=self.payment.amount_capturable, **kwargs)

    def get(self, request, object_id):
        initial = CaptureForm.initial_for(self.currency, self.payment.amount_capturable)
        return self.render({"form": self.form(initial=initial)})

    @staticmethod
    def idempotency_key(token: str) -> str:
        return f"admin-capture-{token}"

    def post(self, request, object_id):
        if not self.payment.is_authorized:
            token = request.POST.get("token", "")
            if token and self.payment.capture_idempotency_key == self.idempotency_key(token):
                # The same confirmation again (a reload, a double-click): its capture was made once.
                captured = self.currency.format(self.payment.amount_received)
                messages.info(request, f"This capture was already made: {captured} captured; nothing more was done.")
            else:
                messages.error(request, f"Only an authorized payment can be captured: this one is {self.status()}.")
            return redirect(self.payment_url())
        form = self.form(data=request.POST)
        if not form.is_valid() or "edit" in request.POST:
            return self.render({"form": form})
        amount = form.cleaned_data["amount"]
        if "confirm" not in request.POST:
            return self.render(
                {
                    "form": form,
                    "confirming": True,
                    "amount": self.currency.format(amount),
                    "released": self.currency.format(self.payment.amount_capturable - amount)
                    if amount < self.payment.amount_capturable
                    else "",
                }
            )
        try:
            payment, replayed = payment_services.payment_capture(
                payment=self.payment,
                # All that is authorized: Stripe's own default, whatever it holds by now.
                amount=None if amount == self.payment.amount_capturable else amount,
                idempotency_key=self.idempotency_key(form.cleaned_data["token"]),
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect(self.payment_url())
        except StripeError as exc:
            messages.warning(
                request,
                f"Stripe did not confirm the capture ({exc.message}). Send the same form again to retry: "
                "it cannot capture twice.",
            )
            return redirect(self.payment_url())
        captured = self.currency.format(payment.amount_received)
        if replayed:
            messages.info(request, f"This capture was already made: {captured} captured; nothing more was done.")
        else:
            self.log(f"Captured {captured} of {self.currency.format(payment.amount)}.")
            messages.success(request, f"Captured {captured}.")
        return redirect(self.payment_url())


class VoidView(AuthorizationView):
    """GET: the confirmation page. POST with `confirm`: the void (payment_cancel)."""

    action = "void"

    def get(self, request, object_id):
        return self.render({"confirming": True})

    def post(self, request, object_id):
        if "confirm" not in request.POST:
            return redirect(self.payment_url())
        try:
            payment = payment_services.payment_cancel(payment=self.payment)
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect(self.payment_url())
        except StripeError as exc:
            messages.warning(request, f"Stripe did not confirm the void ({exc.message}). Try again.")
            return redirect(self.payment_url())
        if self.payment.status != payment.status:
            self.log(f"Voided the authorization of {self.currency.format(self.payment.amount_capturable)}.")
        messages.success(request, "The authorization is voided: nothing was captured, nothing is refunded.")
        return redirect(self.payment_url())
