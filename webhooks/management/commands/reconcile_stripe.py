import logging
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from core.errors import database_error_in, safe_error_text, scrub
from payments.models import Payment
from refunds.models import Refund
from webhooks.reconcile import ReconcileResult, payment_reconcile, payment_reconcile_refunds, refund_reconcile

PROGRESS_EVERY = 100

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Bring every non-final payment and every pending refund up to Stripe's state (the fix for missed "
        "webhooks), and record the refunds Stripe holds for refundable payments (a dashboard refund whose events "
        "were lost). Reads Stripe and applies the same order rules as the webhooks: safe to run any number of times. "
        "A payment it cannot bring up to date (Stripe failing, amounts that do not fit) is reported and skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since", type=float, metavar="HOURS", help="only payments and refunds created in the last HOURS hours"
        )
        parser.add_argument(
            "--overdue",
            type=int,
            metavar="MINUTES",
            help="only non-final payments unchanged for MINUTES minutes (their events are late); no refunds",
        )

    def handle(self, *args, since, overdue, **options):
        if since is not None and since <= 0:
            raise CommandError("--since must be a positive number of hours.")
        if overdue is not None and overdue <= 0:
            raise CommandError("--overdue must be a positive number of minutes.")
        # Non-final payments, and any whose amounts did not fit our limits (checked afresh).
        payments = Payment.objects.filter(~Q(status__in=Payment.FINAL) | ~Q(books_mismatch="")).order_by("created_at")
        refunds = (
            Refund.objects.filter(status__in=(Refund.Status.PENDING, Refund.Status.REQUIRES_ACTION))
            .select_related("payment")
            .order_by("created_at")
        )
        # Paid payments Stripe can still refund: one Stripe read each, so --since bounds them too.
        refundable = Payment.objects.filter(status__in=Payment.REFUNDABLE).order_by("created_at")
        if since is not None:
            cutoff = timezone.now() - timedelta(hours=since)
            payments = payments.filter(created_at__gte=cutoff)
            refunds = refunds.filter(created_at__gte=cutoff)
            refundable = refundable.filter(created_at__gte=cutoff)
        if overdue is not None:
            # Only what the periodic job re-reads often: a payment whose events are late.
            payments = payments.filter(updated_at__lt=timezone.now() - timedelta(minutes=overdue))
            self._run("payments", payments, lambda payment: payment_reconcile(payment=payment))
            return
        self._run("payments", payments, lambda payment: payment_reconcile(payment=payment))
        self._run("refunds", refunds, lambda refund: refund_reconcile(refund=refund))
        self._run("paid payments", refundable, lambda payment: payment_reconcile_refunds(payment=payment))

    def _run(self, label, queryset, reconcile):
        total = queryset.count()
        checked = changed = problems = 0
        for obj in queryset.iterator():
            try:
                result = reconcile(obj)
            except Exception as exc:
                # One object's failure never stops the others: it is reported, and the run goes on.
                # A database error quotes the row (and its client secret): its kind and constraint only.
                logger.warning(
                    "reconcile_stripe: %s %s failed: %s",
                    label[:-1],
                    obj.pk,
                    safe_error_text(exc),
                    exc_info=database_error_in(exc) is None,
                )
                result = ReconcileResult(problem=f"failed: {safe_error_text(exc)}")
            checked += 1
            changed += result.changed
            if result.problem:
                problems += 1
                self.stderr.write(scrub(f"{label[:-1]} {obj.pk}: {result.problem}"))
            if checked % PROGRESS_EVERY == 0:
                self.stdout.write(f"… {label}: {checked}/{total}")
        self.stdout.write(f"{label}: {checked} checked, {changed} updated, {problems} not brought up to date")
