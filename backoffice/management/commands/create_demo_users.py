from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from backoffice.roles import FINANCE, SUPPORT, ensure_desk_groups

DEMO_PASSWORD = "paymentsite-demo"


class Command(BaseCommand):
    help = (
        "Create (or reset) the demo desk users (support in the Support group, finance in Finance, an operator "
        "superuser) and the demo storefront user with an API token; make the desk's groups. DEBUG only."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--site-url", default="http://127.0.0.1:8000", help="where the site runs (make run passes its PORT)"
        )

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("Demo users have known passwords: this command only runs with DEBUG on.")
        User = get_user_model()

        groups = ensure_desk_groups()
        desk_users = (
            ("support", groups[SUPPORT], False),
            ("finance", groups[FINANCE], False),
            ("operator", None, True),
        )
        for username, group, superuser in desk_users:
            user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
            user.is_staff = True
            user.is_superuser = superuser
            user.set_password(DEMO_PASSWORD)
            user.save()
            user.user_permissions.clear()
            user.groups.set([group] if group else [])

        shop, _ = User.objects.get_or_create(username="shop", defaults={"email": "shop@example.com"})
        shop.set_password(DEMO_PASSWORD)
        shop.save()
        token, _ = Token.objects.get_or_create(user=shop)

        site = options["site_url"].rstrip("/")
        self.stdout.write(
            "Demo users (development only):\n"
            f"  support desk ({site}/admin/):\n"
            f"    support  / {DEMO_PASSWORD}  (Support group: find payments, refund, capture)\n"
            f"    finance  / {DEMO_PASSWORD}  (Finance group: read payments and the books)\n"
            f"    operator / {DEMO_PASSWORD}  (superuser: users, groups, endpoints, jobs)\n"
            f"  storefront: shop / {DEMO_PASSWORD}, API token {token.key}\n"
            f"  try: curl -s -X POST {site}/api/payments/ \\\n"
            f"        -H 'Authorization: Token {token.key}' -H 'Idempotency-Key: demo-1' \\\n"
            '        -H \'Content-Type: application/json\' -d \'{"amount": 2000, "currency": "usd"}\''
        )
