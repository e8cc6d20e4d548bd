import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from payments.currencies import format_amount
from payments.models import Payment


class Refund(models.Model):
    """
    Money given back on a payment. Written `pending` before Stripe is called, so a
    refund is never lost between our database and Stripe; `status` only changes
    through `apply_stripe_status`.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        REQUIRES_ACTION = "requires_action"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    class Reason(models.TextChoices):
        DUPLICATE = "duplicate"
        FRAUDULENT = "fraudulent"
        REQUESTED_BY_CUSTOMER = "requested_by_customer"

    # Statuses whose amount is spoken for: they count against the payment's refundable amount.
    HOLDING = frozenset({Status.PENDING, Status.REQUIRES_ACTION, Status.SUCCEEDED})
    FINAL = frozenset({Status.FAILED, Status.CANCELED})
    # Stripe moves a refund forward only: pending -> requires_action -> succeeded,
    # and from any of them to failed or canceled (a succeeded refund can still fail
    # later). News that would move it back is older than what we hold.
    PROGRESS = {
        Status.PENDING: 0,
        Status.REQUIRES_ACTION: 1,
        Status.SUCCEEDED: 2,
        Status.FAILED: 3,
        Status.CANCELED: 3,
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    stripe_refund_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    amount = models.BigIntegerField(help_text="In the payment currency's minor unit.")
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=32, choices=Reason.choices, blank=True)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="refunds_created",
        help_text="Null when the refund came from Stripe (e.g. its dashboard).",
    )
    # The key the caller (API client, admin form) sent; the same key never refunds twice.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    # Set while one request is sending the refund to Stripe; a concurrent request
    # with the same key sees it and answers 409 instead of sending it too.
    stripe_call_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    failure_reason = models.CharField(max_length=255, blank=True)
    # Set when refunds made at Stripe took this unanswered refund's amount and it was
    # released (canceled here) to keep the books within what was received: Stripe must
    # still be asked whether it made it (refunds.services.refund_settle_released).
    stripe_check_due = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.UniqueConstraint(
                fields=["payment", "idempotency_key"], name="refund_unique_idempotency_key_per_payment"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="refund_status_created"),
            models.Index(fields=["created_at"], condition=Q(stripe_check_due=True), name="refund_stripe_check_due"),
        ]

    def __str__(self):
        return f"Refund {format_amount(self.amount, self.payment.currency)} {self.status} ({self.id})"

    @property
    def stripe_idempotency_key(self) -> str:
        """The key every Stripe call for this refund carries, retries included."""
        return f"refund-{self.id}"

    def release(self, *, reason: str) -> None:
        """
        Give up the amount of a refund set aside here that Stripe never answered
        for (pending, no Stripe id): it becomes `canceled`, no longer counts
        against the payment, and `stripe_check_due` says Stripe must still be
        asked about it. Raises ValueError for any other refund. The caller holds
        the payment's row lock and saves.
        """
        if self.status != self.Status.PENDING or self.stripe_refund_id:
            raise ValueError("Only a pending refund Stripe never answered for can be released.")
        self.status = self.Status.CANCELED
        self.failure_reason = reason[:255]
        self.stripe_check_due = True

    def bind_stripe_refund(self, stripe_refund_id: str) -> None:
        """
        Record that Stripe's refund `stripe_refund_id` is this refund. Whatever
        this refund's outcome was without Stripe's answer (released, or failed
        on a refusal) was ours, not Stripe's: it goes back to pending, for
        Stripe's status to be applied next. The caller holds the payment's row
        lock and saves.
        """
        if self.stripe_refund_id is None and self.status in self.FINAL:
            self.status = self.Status.PENDING
            self.failure_reason = ""
        self.stripe_refund_id = stripe_refund_id
        self.stripe_check_due = False

    def may_apply(self, status: str) -> bool:
        return self.PROGRESS[status] > self.PROGRESS[self.status]

    def apply_stripe_status(self, status: str, *, failure_reason: str = "") -> bool:
        """
        Move to `status` if it is further along than the current one; returns
        whether it moved. The caller holds the payment's row lock, saves, and
        recomputes the payment's refunded amount.
        """
        if status not in self.PROGRESS:
            raise ValueError(f"Unknown refund status {status!r}")
        if not self.may_apply(status):
            return False
        self.status = status
        if status == self.Status.FAILED:
            self.failure_reason = failure_reason[:255]
        return True
