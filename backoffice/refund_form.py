"""
The support desk's refund form (`/admin/payments/payment/<id>/refund/`): an amount, a
Stripe reason and a note, a confirmation page, then `refunds.services.refund_create`.
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

from backoffice.display import payment_title
from core.exceptions import DomainError
from core.stripe_gateway import StripeError
from payments.currencies import Currency, format_amount, get_currency
from payments.models import Payment
from refunds import services as refund_services
from refunds.models import Refund

# --- Refund -------------------------------------------------------------------

# More digits than any amount the API takes (payments.currencies.MAXIMUM_AMOUNT) in any currency.
AMOUNT_MAX_DIGITS = 12


class RefundForm(forms.Form):
    """
    The amount is typed in the currency's units ("12.50", "500" for yen) and
    cleaned to minor units. `token` is minted when the form is first shown and
    becomes the refund's idempotency key: the same form sent twice (a
    double-click, a reload, the back button) refunds once.
    """

    amount = forms.DecimalField()
    reason = forms.ChoiceField(
        choices=[("", "None given"), *Refund.Reason.choices],
        required=False,
        help_text="Sent to Stripe.",
    )
    note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="For the audit trail: why, who asked, the ticket number. Stays here.",
    )
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, currency: Currency, refundable: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.refundable = refundable
        too_much = f"That is more than is left: only {currency.format(refundable)} can still be refunded."
        self.fields["amount"] = forms.DecimalField(
            label=f"Amount ({currency.code.upper()})",
            decimal_places=currency.decimals,
            # Bounds checked on the Decimal as typed, before clean_amount turns it into
            # minor units: "1e999999999" is refused here, not expanded to a billion digits.
            max_digits=AMOUNT_MAX_DIGITS,
            min_value=Decimal(1).scaleb(-currency.decimals),
            max_value=max(Decimal(refundable).scaleb(-currency.decimals), Decimal(0)),
            error_messages={"max_value": too_much},
            help_text=f"At most {currency.format(refundable)}, all that is left to refund.",
        )

    @staticmethod
    def new_token() -> str:
        return uuid.uuid4().hex

    @classmethod
    def initial_for(cls, currency: Currency, refundable: int) -> dict:
        return {"amount": Decimal(refundable).scaleb(-currency.decimals), "token": cls.new_token()}

    def clean_amount(self) -> int:
        minor = int(self.cleaned_data["amount"].scaleb(self.currency.decimals))
        if minor > self.refundable:
            raise ValidationError(
                f"That is more than is left: only {self.currency.format(self.refundable)} can still be refunded."
            )
        return minor


class RefundView(View):
    """
    GET: the form. POST: the confirmation page stating exactly what will happen;
    POST with `confirm`: the refund, through refunds.services.refund_create.
    Staff need `refunds.add_refund` and the right to view the payment.
    """

    model_admin = None
    template_name = "admin/payments/payment/refund.html"

    def dispatch(self, request, object_id):
        self.payment = get_object_or_404(Payment.objects.select_related("user"), pk=object_id)
        if not self.model_admin.can_refund(request, self.payment):
            raise PermissionDenied
        self.currency = get_currency(self.payment.currency)
        self.refundable = max(refund_services.payment_refundable_amount(payment=self.payment), 0)
        return super().dispatch(request, object_id)

    def get(self, request, object_id):
        if not self.is_refundable():
            messages.error(request, self.not_refundable_message())
            return redirect(self.payment_url())
        return self.render(self.form(initial=RefundForm.initial_for(self.currency, self.refundable)))

    def post(self, request, object_id):
        sent = self.refund_sent_with(request.POST) if "confirm" in request.POST else None
        if sent is not None and sent.status in Refund.HOLDING:
            # The same confirmation again (a reload, a double-click): the money its
            # first sending set aside is not counted against it, so it reaches the
            # service, which answers with that first refund instead of a new one.
            self.refundable += sent.amount
        elif not self.is_refundable():
            messages.error(request, self.not_refundable_message())
            return redirect(self.payment_url())
        form = self.form(data=request.POST)
        if not form.is_valid() or "edit" in request.POST:
            return self.render(form)
        if "confirm" not in request.POST:
            return self.render(form, confirming=True)
        return self.refund(form)

    @staticmethod
    def idempotency_key(token: str) -> str:
        return f"admin-{token}"

    def refund_sent_with(self, data) -> Refund | None:
        """The refund an earlier sending of this form made, if any."""
        token = data.get("token", "")
        return self.payment.refunds.filter(idempotency_key=self.idempotency_key(token)).first() if token else None

    def refund(self, form):
        request = self.request
        key = self.idempotency_key(form.cleaned_data["token"])
        try:
            refund, replayed = refund_services.refund_create(
                payment=self.payment,
                amount=form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                note=form.cleaned_data["note"],
                created_by=request.user,
                idempotency_key=key,
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            # The refused attempt keeps its key; a corrected one gets a fresh one.
            data = request.POST.copy()
            data["token"] = RefundForm.new_token()
            return self.render(self.form(data=data), status=400)
        except StripeError as exc:
            refund = self.refund_sent_with(form.cleaned_data)
            if refund is not None:
                self.log(refund)
            if exc.ambiguous:
                messages.warning(
                    request,
                    f"Stripe did not confirm the refund of {self.amount_text(form)} ({exc.message}). "
                    "It is recorded as pending and `retry_refunds` will complete it: do not refund again.",
                )
            else:
                messages.error(request, f"Stripe refused the refund: {exc.message}")
            return redirect(self.payment_url())
        amount = format_amount(refund.amount, self.payment.currency)
        if replayed:
            messages.info(
                request,
                f"This refund form was already sent: the refund of {amount} was made once "
                f"(now {refund.status}); nothing more was refunded.",
            )
        else:
            self.log(refund)
            messages.success(request, f"Refund of {amount} created: {refund.status.replace('_', ' ')}.")
        # Redirect after POST: reloading the payment's page sends nothing again.
        return redirect(self.payment_url())

    def log(self, refund: Refund) -> None:
        amount = format_amount(refund.amount, self.payment.currency)
        reason = refund.get_reason_display().lower() if refund.reason else "no reason given"
        note = f" Note: {refund.note}" if refund.note else ""
        self.model_admin.log_addition(
            self.request, refund, f"Refunded {amount} on payment {self.payment.pk} ({reason}).{note}"
        )

    def form(self, **kwargs) -> RefundForm:
        return RefundForm(currency=self.currency, refundable=self.refundable, **kwargs)

    def amount_text(self, form) -> str:
        return self.currency.format(form.cleaned_data["amount"])

    def is_refundable(self) -> bool:
        return self.payment.status in Payment.REFUNDABLE and self.refundable > 0

    def not_refundable_message(self) -> str:
        if self.payment.status not in Payment.REFUNDABLE:
            return f"This payment cannot be refunded: it is {self.payment.status.replace('_', ' ')}."
        return "Nothing is left to refund on this payment (pending refunds included)."

    def payment_url(self) -> str:
        return reverse("admin:payments_payment_change", args=[self.payment.pk])

    def render(self, form, *, confirming=False, status=200):
        context = {
            **self.model_admin.admin_site.each_context(self.request),
            "opts": Payment._meta,
            "title": f"Refund: {payment_title(self.payment)}",
            "charged": self.currency.format(self.payment.amount_received),
            "payment": self.payment,
            "payment_url": self.payment_url(),
            "form": form,
            "confirming": confirming,
            "refundable": self.currency.format(self.refundable),
        }
        if confirming:
            amount = form.cleaned_data["amount"]
            context |= {
                "amount": self.currency.format(amount),
                "left_after": self.currency.format(self.refundable - amount),
                "is_full": amount == self.refundable,
                "reason": dict(Refund.Reason.choices).get(form.cleaned_data["reason"], ""),
            }
        return TemplateResponse(self.request, self.template_name, context, status=status)
