from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

WEBHOOK_PATH = "/webhooks/stripe/"


class Command(BaseCommand):
    help = (
        "Run the local fake Stripe (localstripe, with Stripe-like idempotency, a fault layer, and a layer taking "
        "the parameters localstripe refuses) on 127.0.0.1 and register this site's webhook endpoint with "
        "STRIPE_WEBHOOK_SECRET. Development and tests only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8420)
        parser.add_argument(
            "--site-url",
            default="http://127.0.0.1:8000",
            help="where this site runs; its webhook endpoint is SITE_URL/webhooks/stripe/",
        )

    def handle(self, *args, port, site_url, **options):
        # Imported here: localstripe is a development dependency, absent in production.
        try:
            from devkit.fakestripe import serve
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise CommandError(f"localstripe is not installed ({exc}); install requirements-dev.txt.") from exc
        secret = settings.STRIPE_WEBHOOK_SECRET
        if not secret:
            raise CommandError("STRIPE_WEBHOOK_SECRET is not set: the local Stripe could not sign its webhooks.")
        webhook_url = site_url.rstrip("/") + WEBHOOK_PATH
        self.stdout.write(f"Local Stripe on http://127.0.0.1:{port}; webhooks go to {webhook_url}")
        serve(port, webhook_url=webhook_url, webhook_secret=secret)
