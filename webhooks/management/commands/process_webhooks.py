from django.core.management.base import BaseCommand, CommandError

from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_reprocess


class Command(BaseCommand):
    help = "Reprocess stored Stripe events whose handler failed (what the admin's reprocess action does)."

    def add_arguments(self, parser):
        parser.add_argument("--failed", action="store_true", help="reprocess every failed event, oldest first")
        parser.add_argument("--event", action="append", default=[], metavar="EVT_ID", help="only this event (repeat)")

    def handle(self, *args, failed, event, **options):
        if not failed:
            raise CommandError("Say which events: --failed (optionally with --event evt_…).")
        events = WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.FAILED).order_by("received_at")
        if event:
            events = events.filter(stripe_event_id__in=event)
        counts = {outcome: 0 for outcome in WebhookEvent.Outcome.values}
        for stored in events.iterator():
            stored = webhook_event_reprocess(event=stored)
            counts[stored.outcome] += 1
            if stored.outcome == WebhookEvent.Outcome.FAILED:
                self.stderr.write(f"{stored.stripe_event_id} ({stored.type}) failed again: {stored.error}")
        total = sum(counts.values())
        self.stdout.write(
            f"Reprocessed {total} failed event(s): {counts['processed']} processed, "
            f"{counts['ignored']} ignored, {counts['failed']} still failed."
        )
