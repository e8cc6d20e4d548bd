import logging
import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone

from payments.currencies import format_amount

logger = logging.getLogger(__name__)


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
    # the further along in Stripe's lifecycle wins when two pieces of news carry
    # the same second (Stripe's clock counts seconds): a PaymentIntent is created
    # (requires_payment_method), confirmed, maybe challenged (requires_action),
    # processed, and only then declined (`payment_failed`: failed) or authorized
    # (requires_capture); a decline therefore outranks the steps before it.
    PROGRESS = {
        Status.REQUIRES_PAYMENT_METHOD: 0,
        Status.REQUIRES_CONFIRMATION: 1,
        Status.REQUIRES_ACTION: 2,
        Status.PROCESSING: 3,
        Status.FAILED: 4,
        Status.REQUIRES_CAPTURE: 5,
    }
    # Older API versions (localstripe speaks 2017-08-15) use other names.
    STRIPE_ALIASES = {
        "requires_source": Status.REQUIRES_PAYMENT_METHOD,
        "requires_source_action": Status.REQUIRES_ACTION,
    }

    class CaptureMethod(models.TextChoices):
        # Stripe's `automatic_async` captures at once too: it is recorded as automatic.
        AUTOMATIC = "automatic"
        MANUAL = "manual", "manual (authorize, capture later)"

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
    amount = models.BigIntegerField(
        help_text="What the PaymentIntent asks for, in the currency's minor unit; follows Stripe until final."
    )
    # Any three-letter code Stripe uses: a PaymentIntent adopted from Stripe may be
    # in a currency outside payments.currencies' table (it is then shown generically).
    currency = models.CharField(max_length=3, help_text="Lowercase ISO code, as Stripe writes it.")
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.REQUIRES_PAYMENT_METHOD)
    capture_method = models.CharField(max_length=16, choices=CaptureMethod.choices, default=CaptureMethod.AUTOMATIC)
    amount_capturable = models.BigIntegerField(
        default=0, help_text="What an authorized, uncaptured payment may still capture (requires_capture only)."
    )
    amount_received = models.BigIntegerField(default=0, help_text="What Stripe captured: the most a refund may give.")
    capture_before = models.DateTimeField(
        null=True, blank=True, help_text="When an uncaptured authorization expires (Stripe's capture_before)."
    )
    refunded_amount = models.BigIntegerField(default=0, help_text="The sum of the succeeded refunds.")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # sha256 of the creating request's body: the same key with another body is refused.
    request_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    client_secret = models.CharField(max_length=255, blank=True, editable=False)
    description = models.CharField(max_length=1000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The shopper and the storefront's order, as the storefront sent them (not the API account).
    order_reference = models.CharField(max_length=255, blank=True, help_text="The storefront's own order id.")
    customer_email = models.EmailField(max_length=254, blank=True, help_text="Sent to Stripe as receipt_email.")
    customer_name = models.CharField(max_length=255, blank=True)
    # From the charge's payment_method_details.card.
    card_brand = models.CharField(max_length=32, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    failure_code = models.CharField(max_length=255, blank=True)
    failure_message = models.TextField(blank=True)
    # A chargeback's outcome: what lost disputes took back for good (Stripe gave it to
    # the cardholder; the sum of their amounts, minor units), and the status of the
    # latest dispute (Stripe's Dispute.status; blank when never disputed).
    amount_lost_to_disputes = models.BigIntegerField(
        default=0, editable=False, help_text="What lost disputes took back for good, in minor units."
    )
    dispute_status = models.CharField(
        max_length=64, blank=True, editable=False, help_text="The latest dispute's status at Stripe."
    )
    # Set when Stripe reported amounts our limits cannot hold (e.g. more refunded
    # than received): the books keep to the limits, and staff must look.
    books_mismatch = models.CharField(max_length=255, blank=True, editable=False)
    # Older API versions (before 2025-03-31) release the uncaptured rest of a
    # partial capture with a Refund object: its id, so it is never counted as a refund.
    stripe_release_refund_id = models.CharField(max_length=255, blank=True, editable=False)
    # The capture request holding this payment's capture (one per payment: a
    # PaymentIntent is captured once): its Idempotency-Key, body and lease.
    capture_idempotency_key = models.CharField(max_length=255, blank=True, editable=False)
    capture_request_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    capture_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set while one request is creating the PaymentIntent; a concurrent request
    # with the same key sees it and answers 409 instead of calling Stripe too.
    stripe_call_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When Stripe's state last applied here was true at Stripe, on Stripe's clock
    # only (an event's `created`, the `Date` of Stripe's answer): older news is not applied.
    stripe_state_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # 0 <= refunded_amount <= amount_received <= amount, and nothing capturable beyond the amount.
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=F("amount_received")),
                name="payment_refunded_within_received",
            ),
            models.CheckConstraint(
                condition=Q(amount_received__gte=0) & Q(amount_received__lte=F("amount")),
                name="payment_received_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(amount_capturable__gte=0) & Q(amount_capturable__lte=F("amount")),
                name="payment_capturable_within_amount",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(condition=Q(amount_lost_to_disputes__gte=0), name="payment_dispute_loss_positive"),
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="payment_unique_idempotency_key_per_user"),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="payment_user_created"),
            models.Index(fields=["-created_at"], name="payment_created"),
            models.Index(fields=["status", "-created_at"], name="payment_status_created"),
            models.Index(fields=["currency", "-created_at"], name="payment_currency_created"),
            models.Index(fields=["idempotency_key"], name="payment_idempotency_key"),
            models.Index(fields=["order_reference"], name="payment_order_reference"),
            # customer_email__iexact is UPPER(customer_email) = UPPER(...) on PostgreSQL.
            models.Index(Upper("customer_email"), name="payment_customer_email_upper"),
            models.Index(fields=["card_last4"], name="payment_card_last4"),
            # The support desk's search by amount ("24.00").
            models.Index(fields=["amount"], name="payment_amount"),
            # The authorizations that expire soon (the dashboard), without scanning the paid ones.
            models.Index(
                fields=["capture_before"],
                condition=Q(status="requires_capture"),
                name="payment_authorized_expiry",
            ),
            models.Index(fields=["updated_at"], condition=~Q(books_mismatch=""), name="payment_books_mismatch"),
        ]
        permissions = [("capture_payment", "Can capture or void an authorized payment")]

    def __str__(self):
        return f"{self.display_amount} {self.status} ({self.id})"

    @property
    def display_amount(self) -> str:
        return format_amount(self.amount, self.currency)

    @property
    def unrefunded_amount(self) -> int:
        """
        What succeeded refunds have not given back yet, in minor units: the amount
        received (captured) less `refunded_amount`. Refunds still under way are not
        counted, so this is not what a new refund may take: that is the *refundable*
        amount, `refunds.services.payment_refundable_amount`.
        """
        return self.amount_received - self.refunded_amount

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def is_authorized(self) -> bool:
        """Authorized and not captured yet: it may be captured (in full or in part) or voided."""
        return self.status == self.Status.REQUIRES_CAPTURE

    @property
    def uncaptured_amount(self) -> int:
        """For a paid payment, what was authorized but never captured (released by Stripe); 0 otherwise."""
        return self.amount - self.amount_received if self.status in self.PAID else 0

    @classmethod
    def capture_method_from_stripe(cls, stripe_capture_method) -> str:
        """Our capture method for Stripe's (`automatic`, `automatic_async`, `manual`; None when not told)."""
        if stripe_capture_method == cls.CaptureMethod.MANUAL:
            return cls.CaptureMethod.MANUAL
        return cls.CaptureMethod.AUTOMATIC

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
        amount: int | None = None,
        amount_received: int | None = None,
        amount_capturable: int | None = None,
    ) -> bool:
        """
        Move to `status` if `may_apply` allows it, with the PaymentIntent's amounts
        (minor units; None when the news does not tell them); returns whether the
        status changed. `at` is when the news was true at Stripe, on Stripe's
        clock only: an event's `created`, or the `Date` of Stripe's answer for
        an object Stripe answered with (core.stripe_gateway.answered_at). The caller holds
        the row lock and saves.

        With the status come `amount` (what the PaymentIntent asks for: it follows
        Stripe until the payment is final), `amount_received` (captured) and
        `amount_capturable` (authorized, not captured; 0 outside requires_capture).
        A payment that succeeds without being told what was received received its
        whole amount (automatic capture). What was captured never changes once it
        has been, so a paid payment takes `amount_received` from any news, in any
        order; news of nothing received (older news) changes nothing there.
        """
        if not self.may_apply(status, at):
            if amount_received and self.status in self.PAID and amount_received != self.amount_received:
                self._set_amount_received(amount_received)
                self.status = self._paid_status()
            return False
        if amount:
            self.amount = amount
        if amount_received is not None:
            self._set_amount_received(amount_received)
        elif status == self.Status.SUCCEEDED and not self.amount_received:
            self.amount_received = self.amount
        if status == self.Status.REQUIRES_CAPTURE:
            capturable = self.amount if amount_capturable is None else amount_capturable
            self.amount_capturable = max(0, min(capturable, self.amount))
        else:
            self.amount_capturable = 0
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

    def apply_stripe_card(
        self, *, card_brand: str = "", card_last4: str = "", capture_before: datetime | None = None
    ) -> None:
        """
        Record what the charge says of the card (its brand and last 4 digits) and,
        for an authorization, until when it may be captured. Facts that do not
        change with the order of the news: what is not told is left as it is. The
        caller holds the row lock and saves.
        """
        if card_brand:
            self.card_brand = card_brand[:32]
        if card_last4:
            self.card_last4 = card_last4[-4:]
        if capture_before is not None:
            self.capture_before = capture_before

    @property
    def dispute_lost(self) -> bool:
        """Whether a dispute took money back for good: the payment is no longer plainly paid."""
        return self.amount_lost_to_disputes > 0

    def set_dispute_outcome(self, *, latest_status: str, amount_lost: int) -> None:
        """
        Record what the payment's disputes amount to: `latest_status`, the latest
        dispute's status (Stripe's), and `amount_lost`, the sum of the lost
        ones' amounts (minor units; never below 0). Stripe moves the money
        itself: nothing here is a refund. The caller holds the row lock and saves.
        """
        self.dispute_status = str(latest_status)[:64]
        self.amount_lost_to_disputes = max(int(amount_lost), 0)

    def set_refunded_amount(self, refunded_amount: int, *, held_at_stripe: int = 0) -> None:
        """
        Record the running total of succeeded refunds; a paid payment's status
        follows it (refunds adding up to what was received give `refunded`).
        `held_at_stripe` is what Stripe's refunds add up to, under way ones
        included (minor units).

        A refund Stripe made, even one still under way, proves that its money
        was captured: when it is known before the capture's own news, the
        payment has received its whole amount (automatic capture) or at least
        what was refunded (manual), and asked for at least that much (its amount
        is not settled yet), until that news says exactly. Refunds adding up to
        more than was received do not fit the books: `refunded_amount` stops at
        `amount_received` and `books_mismatch` says so, so the database's
        constraints hold and staff see it.
        """
        proven = max(refunded_amount, held_at_stripe)
        if proven > self.amount_received and self.status not in self.PAID | {self.Status.CANCELED}:
            self.amount = max(self.amount, proven)
            if self.capture_method == self.CaptureMethod.AUTOMATIC:
                self.amount_received = self.amount
            else:
                self.amount_received = proven
        if refunded_amount > self.amount_received:
            self._record_mismatch(
                "refunds above received",
                f"Stripe's succeeded refunds add up to {refunded_amount}, more than the {self.amount_received} "
                "received; the refunded amount is held at what was received.",
            )
            refunded_amount = self.amount_received
        self.refunded_amount = refunded_amount
        if self.status in self.PAID:
            self.status = self._paid_status()

    def _set_amount_received(self, amount_received: int) -> None:
        if amount_received > self.amount:
            self._record_mismatch(
                "received above amount",
                f"Stripe reports {amount_received} received, more than the payment's amount of {self.amount}; "
                "the amount received is held at the amount.",
            )
            amount_received = self.amount
        self.amount_received = max(amount_received, 0)
        if self.refunded_amount > self.amount_received:
            self.set_refunded_amount(self.refunded_amount)

    def _record_mismatch(self, kind: str, text: str) -> None:
        # The log names the payment and the kind only: amounts stay on the row, for staff.
        logger.warning("Payment %s: Stripe's amounts do not fit its limits (%s)", self.pk, kind)
        self.books_mismatch = text[:255]

    def _paid_status(self) -> str:
        if self.refunded_amount <= 0:
            return self.Status.SUCCEEDED
        if self.refunded_amount >= self.amount_received:
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
