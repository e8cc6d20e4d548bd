import logging

from django.core.management.base import BaseCommand, CommandError

import core.stripe_gateway as stripe_gateway
from core.errors import database_error_in, safe_error_text, scrub
from core.exceptions import RefundRefused
from refunds.models import Refund
from refunds.services import refund_retry, refund_settle_released, refunds_awaiting_stripe, refunds_due_a_stripe_check

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Send again every refund left pending without Stripe's answer, with its original idempotency key: "
        "a refund Stripe already made is recorded, never made twice. Safe to run at any time, as often as wanted."
    )

    def handle(self, *args, **options):
        counts = {"recorded": 0, "refused": 0, "unanswered": 0, "elsewhere": 0}
        # Listed first, then each re-read by refund_retry: one finished meanwhile is left alone.
        for refund in list(refunds_awaiting_stripe()):
            try:
                refund = refund_retry(refund=refund)
            except RefundRefused as exc:
                counts["refused"] += 1
                self.stdout.write(scrub(f"refund {refund.id}: {exc.message}"))
                continue
            except stripe_gateway.StripeError as exc:
                counts["unanswered"] += 1
                self.stdout.write(scrub(f"refund {refund.id}: still no answer from Stripe ({exc.message})"))
                continue
            except Exception as exc:
                # One refund that cannot be recorded must not keep the others waiting. A database
                # error quotes the row (and a client secret): its kind and constraint only, no traceback.
                problem = safe_error_text(exc)
                logger.warning(
                    "retry_refunds: refund %s could not be recorded: %s",
                    refund.id,
                    problem,
                    exc_info=database_error_in(exc) is None,
                )
                counts["unanswered"] += 1
                self.stdout.write(f"refund {refund.id}: could not be recorded ({problem})")
                continue
            if refund.status == Refund.Status.PENDING and not refund.stripe_refund_id:
                # Another process took its lease since it was listed, and is sending it.
                counts["elsewhere"] += 1
                self.stdout.write(f"refund {refund.id}: being sent by another process")
                continue
            counts["recorded"] += 1
            self.stdout.write(f"refund {refund.id}: {refund.status} ({refund.stripe_refund_id})")

        # Refunds released because Stripe's own refunds took their amount, whose check at Stripe
        # did not finish (their job is retried; this settles them on the next run too).
        for refund in list(refunds_due_a_stripe_check()):
            try:
                refund = refund_settle_released(refund=refund)
            except Exception as exc:
                self.stdout.write(f"refund {refund.id}: released, Stripe not asked yet ({safe_error_text(exc)})")
                continue
            self.stdout.write(f"refund {refund.id}: released; {refund.status} ({refund.stripe_refund_id})")

        total = sum(counts.values())
        self.stdout.write(
            f"retry_refunds: {total} refund(s) awaiting Stripe; {counts['recorded']} recorded, "
            f"{counts['refused']} refused by Stripe (now failed), {counts['unanswered']} still unanswered, "
            f"{counts['elsewhere']} being sent by another process."
        )
        if counts["unanswered"]:
            raise CommandError(f"{counts['unanswered']} refund(s) are still not recorded: run again later.")
