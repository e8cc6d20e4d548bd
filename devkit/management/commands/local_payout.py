"""
`manage.py local_payout [--currency usd] [--no-pay] [--dispute pi_… --outcome won|lost]`
(development only): ask the local Stripe (STRIPE_API_BASE) for what real Stripe does
on its own: an automatic payout of everything not paid out yet in a currency, then
paid (`payout.paid`, `payout.reconciliation_completed` webhooks to the site); or a
dispute of a PaymentIntent's charge, opened and, with --outcome, closed.
"""

import json
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Local Stripe only: make and pay a payout, or open and close a dispute, as Stripe would."

    def add_arguments(self, parser):
        parser.add_argument("--currency", default="usd")
        parser.add_argument("--no-pay", action="store_true", help="leave the payout in transit")
        parser.add_argument("--dispute", metavar="PAYMENT_INTENT", help="open a dispute of this PaymentIntent instead")
        parser.add_argument("--outcome", choices=["won", "lost"], help="close the dispute so")

    def handle(self, *args, currency, no_pay, dispute, outcome, **options):
        if dispute:
            opened = self._call("/_ledger/disputes", {"payment_intent": dispute})
            self.stdout.write(f"Dispute {opened['id']} of {opened['amount']} {opened['currency']} opened")
            if outcome:
                self._call(f"/_ledger/disputes/{opened['id']}/close", {"outcome": outcome})
                self.stdout.write(f"Dispute {opened['id']} {outcome}")
            return
        payout = self._call("/_ledger/payouts", {"currency": currency.lower()})
        self.stdout.write(f"Payout {payout['id']} of {payout['amount']} {payout['currency']} in transit")
        if not no_pay:
            self._call(f"/_ledger/payouts/{payout['id']}/pay", {})
            self.stdout.write(f"Payout {payout['id']} paid")

    def _call(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            settings.STRIPE_API_BASE.rstrip("/") + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {settings.STRIPE_SECRET_KEY}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise CommandError(
                f"The local Stripe answered {exc.code}: {exc.read().decode('utf-8', 'replace')}"
            ) from exc
        except OSError as exc:
            raise CommandError(f"The local Stripe at {settings.STRIPE_API_BASE} did not answer: {exc}") from exc
