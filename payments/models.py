import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from payments.currencies import CURRENCIES, format_amount


class Payment(models.Model):
    """
    One charge attempt, mirroring one Stripe PaymentIntent.

    The row is written before Stripe is called, so `stripe_payment_intent_id` is
    null until Stripe answers. `status` is only ever changed by the transition
    methods below, which know which moves are legal whatever order Stripe's news
    arrives in.
    """

    class Status(models.TextChoices):
        REQUIRES_PAYMENT_METHOD = "requires_payment_method"
        REQUIRES_CONFIRMATION = "requires_confirmation"
        REQUIRES_ACTION = "requires_action"
        PROCESSING = "processing"
        REQUIRES_CAPTURE = "requires_capture"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"
        PARTIALLY_REFUNDED = "partially_refunded"
        REFUNDED = "refunded"

    # Statuses that money has reached: the payment never leaves this family.
    PAID = frozenset({Status.SUCCEEDED, Status.PARTIALLY_REFUNDED, Status.REFUNDED})
    FINAL = PAID | {Status.CANCELED}
    REFUNDABLE = frozenset({Status.SUCCEEDED, Status.PARTIALLY_REFUNDED})
    # Among the statuses a PaymentIntent can move between before it is final,
    # the further along wins when two pieces of news carry the same timestamp.
    PROGRESS = {
        Status.REQUIRES_PAYMENT_METHOD: 0,
        Status.FAILED: 1,
        Status.REQUIRES_CONFIRMATION: 2,
        Status.REQUIRES_ACTION: 3,
        Status.PROCESSING: 4,
        Status.REQUIRES_CAPTURE: 5,
    }
    # Older API versions (localstripe speaks 2017-08-15) use other names.
    STRIPE_ALIASES = {
        "requires_source": Status.REQUIRES_PAYMENT_METHOD,
        "requires_source_action": Status.REQUIRES_ACTION,
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payments",
        help_text="Null for a PaymentIntent first seen through Stripe.",
    )
    stripe_payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    amount = models.BigIntegerField(help_text="In the currency's minor unit.")
    currency = models.CharField(max_length=3, choices=[(c, c.upper()) for c in CURRENCIES])
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.REQUIRES_PAYMENT_METHOD)
    refunded_amount = models.BigIntegerField(default=0)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # sha256 of the creating request's body: the same key with another body is refused.
    request_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    client_secret = models.CharField(max_length=255, blank=True, editable=False)
    description = models.CharField(max_length=1000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    failure_code = models.CharField(max_length=255, blank=True)
    failure_message = models.TextField(blank=True)
    # Set while one request is creating the PaymentIntent; a concurrent request
    # with the same key sees it and answers 409 instead of calling Stripe too.
    stripe_call_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When Stripe's state last applied here was true at Stripe (an event's
    # `created`, or the moment we read the object): older news is not applied.
    stripe_state_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=models.F("amount")),
                name="payment_refunded_within_amount",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="payment_unique_idempotency_key_per_user"),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="payment_user_created"),
            models.Index(fields=["-created_at"], name="payment_created"),
            models.Index(fields=["status", "-created_at"], name="payment_status_created"),
            models.Index(fields=["currency", "-created_at"], name="payment_currency_created"),
            models.Index(fields=["idempotency_key"], name="payment_idempotency_key"),
        ]

    def __str__(self):
        return f"{self.display_amount} {self.status} ({self.id})"

    @property
    def display_amount(self) -> str:
        return format_amount(self.amount, self.currency)

    @property
    def unrefunded_amount(self) -> int:
        """
        What succeeded refunds have not given back yet, in minor units: the amount
        less `refunded_amount`. Refunds still under way are not counted, so this
        is not what a new refund may take: that is the *refundable* amount,
        `refunds.services.payment_refundable_amount`.
        """
        return self.amount - self.refunded_amount

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @classmethod
    def status_from_stripe(cls, stripe_status: str, *, payment_failed: bool = False) -> str:
        """Our status for a PaymentIntent status (and whether its last attempt failed)."""
        status = cls.STRIPE_ALIASES.get(stripe_status, stripe_status)
        if status not in cls.Status.values or status in (
            cls.Status.FAILED,
            cls.Status.PARTIALLY_REFUNDED,
            cls.Status.REFUNDED,
        ):
            raise ValueError(f"Unknown PaymentIntent status {stripe_status!r}")
        if payment_failed and status == cls.Status.REQUIRES_PAYMENT_METHOD:
            return cls.Status.FAILED
        return status

    def may_apply(self, status: str, at: datetime) -> bool:
        """
        Whether news that the PaymentIntent was in `status` at time `at` may move
        this payment. The rule that makes any order of events converge:

        1. A final status (succeeded and its refund states, canceled) is never
           left: no news about an earlier moment can undo it.
        2. News of a final status always applies (Stripe cannot leave it either).
        3. Between non-final statuses, newer news wins (to the second, Stripe's
           resolution); news of the same second wins only if it is further along
           (`PROGRESS`), so duplicates and same-second reorderings settle the
           same way every time.
        """
        if self.is_final:
            return False
        if status in self.FINAL:
            return True
        at = at.replace(microsecond=0)
        if self.stripe_state_at is None or at > self.stripe_state_at:
            return True
        if at < self.stripe_state_at:
            return False
        return self.PROGRESS[status] >= self.PROGRESS[self.status]

    def apply_stripe_status(
        self,
        status: str,
        *,
        at: datetime,
        failure_code: str = "",
        failure_message: str = "",
    ) -> bool:
        """
        Move to `status` if `may_apply` allows it; returns whether anything changed.
        `at` is when the news was true at Stripe: an event's `created`, or now for
        an object just read from Stripe. The caller holds the row lock and saves.
        """
        if not self.may_apply(status, at):
            return False
        if status == self.Status.SUCCEEDED:
            status = self._paid_status()
        if status == self.Status.FAILED:
            self.failure_code = failure_code[:255]
            self.failure_message = failure_message
        elif status in self.PAID:
            self.failure_code = self.failure_message = ""
        changed = self.status != status
        self.status = status
        at = at.replace(microsecond=0)
        if self.stripe_state_at is None or at > self.stripe_state_at:
            self.stripe_state_at = at
        return changed

    def set_refunded_amount(self, refunded_amount: int) -> None:
        """
        Record the running total of succeeded refunds; a paid payment's status
        follows it (three partial refunds adding up to the charge give `refunded`).
        The database check constraint refuses a total above the amount.
        """
        self.refunded_amount = refunded_amount
        if self.status in self.PAID:
            self.status = self._paid_status()

    def _paid_status(self) -> str:
        if self.refunded_amount <= 0:
            return self.Status.SUCCEEDED
        if self.refunded_amount >= self.amount:
            return self.Status.REFUNDED
        return self.Status.PARTIALLY_REFUNDED


class Dispute(models.Model):
    """A chargeback Stripe told us about (`charge.dispute.*`)."""

    class Status(models.TextChoices):
        """Stripe's dispute statuses (the Dispute object's `status`)."""

        WARNING_NEEDS_RESPONSE = "warning_needs_response"
        WARNING_UNDER_REVIEW = "warning_under_review"
        WARNING_CLOSED = "warning_closed"
        NEEDS_RESPONSE = "needs_response"
        UNDER_REVIEW = "under_review"
        APPEAL_NEEDS_RESPONSE = "appeal_needs_response"
        APPEAL_UNDER_REVIEW = "appeal_under_review"
        WON = "won"
        # Stripe has given the money back to the cardholder for good: no refund is possible.
        LOST = "lost"
        PREVENTED = "prevented"

    # The statuses that still need work from us.
    OPEN_STATUSES = frozenset(
        {
            Status.WARNING_NEEDS_RESPONSE,
            Status.WARNING_UNDER_REVIEW,
            Status.NEEDS_RESPONSE,
            Status.UNDER_REVIEW,
            Status.APPEAL_NEEDS_RESPONSE,
            Status.APPEAL_UNDER_REVIEW,
        }
    )
    # A closed dispute is never reopened here. (Newer API versions can appeal a
    # decided dispute at Stripe, `appeal_*`: news of that after the decision is not applied.)
    CLOSED_STATUSES = frozenset({Status.WON, Status.LOST, Status.WARNING_CLOSED, Status.PREVENTED})
    # How far along each open status is, to settle news of the same second the same way every time.
    PROGRESS = {
        Status.WARNING_NEEDS_RESPONSE: 0,
        Status.WARNING_UNDER_REVIEW: 1,
        Status.NEEDS_RESPONSE: 2,
        Status.UNDER_REVIEW: 3,
        Status.APPEAL_NEEDS_RESPONSE: 4,
        Status.APPEAL_UNDER_REVIEW: 5,
    }

    stripe_dispute_id = models.CharField(max_length=255, unique=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    amount = models.BigIntegerField()
    reason = models.CharField(max_length=64, blank=True)
    # Stripe may add statuses: one this list lacks is still stored as Stripe sent it.
    status = models.CharField(max_length=64, choices=Status.choices)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    stripe_state_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"], name="dispute_status")]

    def __str__(self):
        return f"Dispute {self.stripe_dispute_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def is_closed(self) -> bool:
        return self.status in self.CLOSED_STATUSES

    def may_apply(self, status: str, at: datetime) -> bool:
        """
        Whether news that the dispute was in `status` at time `at` may move it;
        the same rule as Payment.may_apply: a closed dispute is never reopened,
        news of a closure always applies, otherwise newer news wins and news of
        the same second wins only if it is further along.
        """
        if self.is_closed:
            return False
        if status in self.CLOSED_STATUSES or not self.status or self.stripe_state_at is None:
            return True
        at = at.replace(microsecond=0)
        if at != self.stripe_state_at:
            return at > self.stripe_state_at
        return self.PROGRESS.get(status, 0) >= self.PROGRESS.get(self.status, 0)

    def apply_stripe_dispute(self, stripe_dispute: dict, *, at: datetime) -> bool:
        """
        Take status, amount, reason and evidence deadline from a Stripe Dispute
        object if `may_apply` allows it; returns whether it applied. The caller
        holds the payment's row lock and saves.
        """
        status = str(stripe_dispute["status"])
        if not self.may_apply(status, at):
            return False
        self.status = status
        self.amount = int(stripe_dispute.get("amount") or self.amount or 0)
        self.reason = str(stripe_dispute.get("reason") or self.reason or "")[:64]
        due_by = (stripe_dispute.get("evidence_details") or {}).get("due_by")
        if due_by:
            self.evidence_due_by = datetime.fromtimestamp(int(due_by), tz=UTC)
        at = at.replace(microsecond=0)
        if self.stripe_state_at is None or at > self.stripe_state_at:
            self.stripe_state_at = at
        return True
