"""
The books: a mirror of Stripe's balance transactions and payouts, and a
double-entry journal of our own that every balance transaction posts one entry to.

Money is in the currency's minor unit. A posting's `amount` is signed: positive is
a debit, negative a credit; every entry's postings sum to zero in each currency,
which the database checks at commit (a deferred constraint trigger, migration
0002), and the journal is append-only (a trigger refuses UPDATE and DELETE of
entries and postings): a correction is a new entry.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from payments.models import Dispute, Payment
from refunds.models import Refund


class Payout(models.Model):
    """A Stripe payout (`po_…`) to the bank account, and how it reconciles with our books."""

    class Reconciliation(models.TextChoices):
        PENDING = "pending", "Not reconciled yet"
        RECONCILED = "reconciled", "Reconciled"
        UNMATCHED = "unmatched", "Does not match"

    stripe_payout_id = models.CharField(max_length=255, unique=True)
    amount = models.BigIntegerField(help_text="What reaches the bank, minor units.")
    currency = models.CharField(max_length=3)
    # Stripe's: pending, in_transit, paid, failed, canceled.
    status = models.CharField(max_length=32)
    automatic = models.BooleanField(default=True)
    arrival_date = models.DateTimeField(null=True, blank=True)
    stripe_created = models.DateTimeField()
    # Stripe's reconciliation_status: not_applicable, in_progress, completed.
    stripe_reconciliation_status = models.CharField(max_length=32, blank=True)
    reconciliation = models.CharField(max_length=16, choices=Reconciliation.choices, default=Reconciliation.PENDING)
    reconciliation_note = models.CharField(max_length=500, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    # What its transactions add up to (minor units), as of the last reconciliation.
    transaction_count = models.IntegerField(default=0)
    gross = models.BigIntegerField(default=0)
    refunds = models.BigIntegerField(default=0)
    disputes = models.BigIntegerField(default=0)
    fees = models.BigIntegerField(default=0)
    net = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-stripe_created"]
        permissions = [("view_finance_report", "Can view the finance report")]
        indexes = [models.Index(fields=["-stripe_created"], name="payout_created")]

    def __str__(self):
        return f"Payout {self.stripe_payout_id} ({self.status})"


class BalanceTransaction(models.Model):
    """A Stripe balance transaction (`txn_…`), recorded once however often it is seen."""

    stripe_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=64)
    reporting_category = models.CharField(max_length=64)
    amount = models.BigIntegerField(help_text="Gross, minor units; negative when money leaves the balance.")
    fee = models.BigIntegerField(default=0)
    fee_details = models.JSONField(default=list, blank=True)
    net = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    exchange_rate = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    # The object that moved the money: ch_, re_, dp_, po_... and its kind.
    source_id = models.CharField(max_length=255, blank=True)
    source_type = models.CharField(max_length=32, blank=True)
    payment_intent_id = models.CharField(max_length=255, blank=True)
    payout = models.ForeignKey(Payout, null=True, blank=True, on_delete=models.PROTECT, related_name="transactions")
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    refund = models.ForeignKey(Refund, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    dispute = models.ForeignKey(Dispute, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    available_on = models.DateTimeField(null=True, blank=True)
    stripe_created = models.DateTimeField()
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-stripe_created", "-id"]
        indexes = [
            models.Index(fields=["-stripe_created"], name="txn_created"),
            models.Index(fields=["source_id"], name="txn_source"),
            models.Index(fields=["reporting_category", "-stripe_created"], name="txn_category_created"),
            models.Index(fields=["payment_intent_id"], name="txn_payment_intent"),
        ]

    def __str__(self):
        return f"{self.stripe_id} {self.reporting_category} {self.amount} {self.currency}"


class Account(models.Model):
    """An account of the journal, in one currency."""

    class Kind(models.TextChoices):
        STRIPE_BALANCE = "stripe_balance", "Stripe balance"
        SALES = "sales", "Sales"
        REFUNDS = "refunds", "Refunds"
        STRIPE_FEES = "stripe_fees", "Stripe fees"
        DISPUTES = "disputes", "Disputes"
        DISPUTE_FEES = "dispute_fees", "Dispute fees"
        BANK = "bank", "Bank"
        OTHER = "other", "Other Stripe adjustments"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    currency = models.CharField(max_length=3)

    class Meta:
        ordering = ["currency", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "currency"], name="account_kind_currency"),
            # Postings reference (id, currency): a posting is in its account's currency.
            models.UniqueConstraint(fields=["id", "currency"], name="account_id_currency"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.currency})"


class Entry(models.Model):
    """One journal entry: the postings of one balance transaction, balanced per currency."""

    balance_transaction = models.OneToOneField(
        BalanceTransaction, on_delete=models.PROTECT, related_name="entry", null=True, blank=True
    )
    description = models.CharField(max_length=255)
    occurred_on = models.DateField(help_text="The balance transaction's day (UTC).")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "entries"

    def __str__(self):
        return f"Entry {self.pk}: {self.description}"


class Posting(models.Model):
    """An amount on one account within one entry: positive debit, negative credit."""

    entry = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="postings")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="postings")
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    occurred_on = models.DateField()

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.account}: {self.amount}"


class AccountDay(models.Model):
    """
    An account's postings summed per day, kept by a trigger on postings (migration
    0002): the report and the trial balance read these, never millions of postings.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="days")
    day = models.DateField()
    amount = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["account", "day"], name="account_day")]
        indexes = [models.Index(fields=["-day"], name="account_day_day")]

    def __str__(self):
        return f"{self.account} {self.day}: {self.amount}"


class UnmatchedItem(models.Model):
    """Something a payout's reconciliation could not match, and why; finance resolves it."""

    payout = models.ForeignKey(Payout, on_delete=models.CASCADE, related_name="unmatched")
    balance_transaction = models.ForeignKey(BalanceTransaction, null=True, blank=True, on_delete=models.CASCADE)
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.reason


class SyncState(models.Model):
    """Where `sync_ledger` got to: the newest balance transaction it has seen (Stripe's `created`, Unix seconds)."""

    name = models.CharField(max_length=32, unique=True, default="balance_transactions")
    last_created = models.BigIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} up to {self.last_created}"
