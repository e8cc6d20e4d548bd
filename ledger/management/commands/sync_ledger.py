"""`manage.py sync_ledger [--since UNIX_SECONDS]`: record every balance transaction Stripe made since."""

from django.core.management.base import BaseCommand, CommandError

import core.stripe_gateway as stripe_gateway
from ledger.services import ledger_sync


class Command(BaseCommand):
    help = "Page through Stripe's balance transactions since the last sync (or --since) and record each once."

    def add_arguments(self, parser):
        parser.add_argument("--since", type=int, default=None, help="Unix seconds; default: where the last sync got to")

    def handle(self, *args, since=None, **options):
        try:
            result = ledger_sync(since=since)
        except stripe_gateway.StripeError as exc:
            raise CommandError(f"Stripe: {exc.message}") from exc
        self.stdout.write(
            f"sync_ledger: {result.seen} seen, {result.new} new, {result.posted} posted"
            f" (created {result.since} to {result.until})"
        )
