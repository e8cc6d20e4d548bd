from django.core.management.base import BaseCommand, CommandError

from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_reprocess, webhook_event_reprocess_now


class Command(BaseCommand):
    help = (
        "Apply again the stored Stripe events whose every attempt failed: here and now (reading from Stripe "
        "a PaymentIntent not known here), or with --queue by the workers, as the admin's reprocess action does."
    )

    def add_arguments(self, parser):
        parser.add_argument("--failed", action="store_true", help="every failed event, oldest first")
        parser.add_argument("--event", action="append", default=[], metavar="EVT_ID", help="only this event (repeat)")
        parser.add_argument("--queue", action="store_true", help="queue their apply jobs instead of running them here")

    def handle(self, *args, failed, event, queue, **options):
        if not failed:
            raise CommandError("Say which events: --failed (optionally with --event evt_…).")
        events = WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.FAILED).order_by("received_at")
        if event:
            events = events.filter(stripe_event_id__in=event)
        if queue:
            queued = sum(
                webhook_event_reprocess(event=stored).outcome == WebhookEvent.Outcome.PENDING
                for stored in events.iterator()
            )
            self.stdout.write(f"Queued {queued} failed event(s) for the workers.")
            return
        counts = {outcome: 0 for outcome in WebhookEvent.Outcome.values}
        for stored in events.iterator():
            stored = webhook_event_reprocess_now(event=stored)
            counts[stored.outcome] += 1
            if stored.outcome == WebhookEvent.Outcome.FAILED:
                self.stderr.write(f"{stored.stripe_event_id} ({stored.type}) failed again: {stored.error}")
        total = sum(counts.values())
        self.stdout.write(
            f"Reprocessed {total} failed event(s): {counts['processed']} processed, "
            f"{counts['ignored']} ignored, {counts['failed']} still failed."
        )
