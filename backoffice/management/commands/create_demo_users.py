from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

DEMO_PASSWORD = "paymentsite-demo"


class Command(BaseCommand):
    help = "Create (or reset) the demo staff user and the demo storefront user with an API token. DEBUG only."

    def add_arguments(self, parser):
        parser.add_argument(
            "--site-url", default="http://127.0.0.1:8000", help="where the site runs (make run passes its PORT)"
        )

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("Demo users have known passwords: this command only runs with DEBUG on.")
        User = get_user_model()

        staff, _ = User.objects.get_or_create(username="support", defaults={"email": "support@example.com"})
        staff.is_staff = staff.is_superuser = True
        staff.set_password(DEMO_PASSWORD)
        staff.save()
        staff.user_permissions.add(Permission.objects.get(codename="add_refund", content_type__app_label="refunds"))

        shop, _ = User.objects.get_or_create(username="shop", defaults={"email": "shop@example.com"})
        shop.set_password(DEMO_PASSWORD)
        shop.save()
        token, _ = Token.objects.get_or_create(user=shop)

        site = options["site_url"].rstrip("/")
        self.stdout.write(
            "Demo users (development only):\n"
            f"  staff:      support / {DEMO_PASSWORD}  -> {site}/admin/\n"
            f"  storefront: shop / {DEMO_PASSWORD}, API token {token.key}\n"
            f"  try: curl -s -X POST {site}/api/payments/ \\\n"
            f"        -H 'Authorization: Token {token.key}' -H 'Idempotency-Key: demo-1' \\\n"
            '        -H \'Content-Type: application/json\' -d \'{"amount": 2000, "currency": "usd"}\''
        )
