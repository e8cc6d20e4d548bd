"""
The pytest plugin of the development kit (loaded by the root conftest.py): fixtures
shared by every app's tests: the local Stripe (one real process per
test session), the three recurring users (an owner, an outsider and staff),
and the real browser (Debian's Chromium driven by Playwright).
"""

import os
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connection

from devkit.fakestripe import FakeStripe
from devkit.receiver import NotificationReceiver
from devkit.scenarios import SITE_SERVERS_LEASE_SECONDS
from devkit.siteserver import SiteServer
from devkit.workers import FAST_RECOVERY_ENV, JobWorker
from payments.tests.factories import UserFactory, api_client_for
from refunds.tests.factories import paid_payment_at_stripe


@pytest.fixture(scope="session")
def fake_stripe_server():
    with FakeStripe.start() as server:
        yield server


@pytest.fixture
def fake_stripe(fake_stripe_server, settings):
    """The local Stripe, emptied, with no faults, and the app pointed at it."""
    settings.STRIPE_API_BASE = fake_stripe_server.api_base
    fake_stripe_server.reset()
    yield fake_stripe_server
    fake_stripe_server.clear_faults()


# localstripe sends each webhook this many seconds after the call that caused it.
LOCALSTRIPE_WEBHOOK_DELAY = 1.0


@pytest.fixture(scope="session")
def site_servers(django_db_setup, fake_stripe_server):
    """
    Two gunicorn servers of two workers each on the test database and the local
    Stripe, for the scenarios that need real processes (tests using them must be
    `django_db(transaction=True)`: the servers only see committed rows).
    """
    database = connection.settings_dict["NAME"]
    extra_env = {"REFUND_CREATE_LEASE_SECONDS": str(SITE_SERVERS_LEASE_SECONDS)}
    with (
        SiteServer.start(database_name=database, stripe_api_base=fake_stripe_server.api_base, extra_env=extra_env) as a,
        SiteServer.start(database_name=database, stripe_api_base=fake_stripe_server.api_base, extra_env=extra_env) as b,
    ):
        yield a, b


@pytest.fixture
def job_workers(transactional_db, fake_stripe_server):
    """
    Two real background workers (`manage.py procrastinate worker`, two jobs at
    once each) on the test database and the local Stripe, supervised (started
    again when they exit), with crash recovery in seconds (FAST_RECOVERY_ENV).
    They apply the webhook events the test stores; they only see committed
    rows, so the test's database is transactional. They run for this test only
    (~1 s to start): other tests run queued jobs themselves, in-process, and a
    worker left running would race them. Jobs still queued at the end are dropped.
    """
    options = {
        "database_name": connection.settings_dict["NAME"],
        "stripe_api_base": fake_stripe_server.api_base,
        "extra_env": FAST_RECOVERY_ENV,
        "supervise": True,
        "wait": False,
    }
    with JobWorker.start(**options) as first, JobWorker.start(**options) as second:
        first.wait_until_ready()
        second.wait_until_ready()
        yield first, second
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs")


@pytest.fixture
def no_jobs_left():
    """
    For a transactional test that commits jobs: a transactional test's flush leaves
    procrastinate's table alone (not one of our models), so the jobs go afterwards.
    """
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs")


@pytest.fixture
def stripe_webhooks(fake_stripe, live_server, job_workers, settings):
    """
    The local Stripe, sending its own signed webhooks to this test's live server
    (`/webhooks/stripe/`, signed with STRIPE_WEBHOOK_SECRET) until the test ends;
    the real workers apply them.
    """
    url = live_server.url + "/webhooks/stripe/"
    fake_stripe.register_webhook(url, settings.STRIPE_WEBHOOK_SECRET)
    yield fake_stripe
    # localstripe cannot forget a registration; one limited to no event type drops
    # what it sends from now on. It reads its registrations when it sends, ~1 s
    # after the API call, so wait that out: a delivery still queued must see this
    # one, not the next test's, or it lands in the next test's database.
    fake_stripe.register_webhook(url, settings.STRIPE_WEBHOOK_SECRET, events=[])
    time.sleep(LOCALSTRIPE_WEBHOOK_DELAY + 0.5)


@pytest.fixture
def paid_payment(owner_api, fake_stripe):
    """`paid_payment(amount=...)`: the owner's payment, paid at the local Stripe."""

    def make(amount: int = 10_000, currency: str = "usd"):
        return paid_payment_at_stripe(owner_api, amount=amount, currency=currency)

    return make


@pytest.fixture
def owner(db):
    return UserFactory(username="alice", email="alice@example.com")


@pytest.fixture
def outsider(db):
    return UserFactory(username="mallory", email="mallory@example.com")


@pytest.fixture
def staff(db):
    """Support staff allowed to refund."""
    user = UserFactory(username="sam", email="sam@example.com", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="add_refund", content_type__app_label="refunds"))
    return user


@pytest.fixture
def owner_api(owner):
    return api_client_for(owner)


@pytest.fixture
def outsider_api(outsider):
    return api_client_for(outsider)


@pytest.fixture
def staff_api(staff):
    return api_client_for(staff)


# --- The real browser ---------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Playwright's own browser download does not work here: drive Debian's Chromium (`make chromium`)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make chromium` installs it")
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


def pytest_runtest_setup(item):
    # Playwright's sync API runs an event loop in the test's thread for the rest of
    # the session; Django refuses ORM calls there (creating and, at the end,
    # destroying the test database included) unless told this single-threaded use
    # is safe. So from the first browser test on, it is told.
    if item.get_closest_marker("browser"):
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


@pytest.fixture
def screenshot(page):
    """`screenshot("name")` saves the page as test-artifacts/<name>.png, to look at after the run."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


# --- The support desk (the admin) ---------------------------------------------

SUPPORT_DESK_VIEW_PERMISSIONS = (
    ("payments", "view_payment"),
    ("payments", "view_dispute"),
    ("refunds", "view_refund"),
    ("webhooks", "view_webhookevent"),
)


def support_desk_user(username: str, *, can_refund: bool):
    user = UserFactory(username=username, email=f"{username}@example.com", is_staff=True)
    codenames = [codename for _, codename in SUPPORT_DESK_VIEW_PERMISSIONS]
    if can_refund:
        codenames.append("add_refund")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def support_viewer(db):
    """Support staff who may look at everything in the support desk but not refund."""
    return support_desk_user("vera", can_refund=False)


@pytest.fixture
def support_refunder(db):
    """Support staff who may look at everything and refund (`refunds.add_refund`)."""
    return support_desk_user("rita", can_refund=True)


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", email="root@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def fast_password_hashing(settings):
    """Users made by the dozen: MD5 instead of PBKDF2's deliberate slowness (tests only)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Notifications to the storefront -------------------------------------------


@pytest.fixture
def notification_receiver():
    """
    A storefront receiving notifications (devkit.receiver): a real HTTP server in
    this process that verifies every signature with the standardwebhooks library
    and records what it got; stopped when the test ends. Its hanging outlasts the
    site's NOTIFICATIONS_TIMEOUT (the tests' workers: 2 s).
    """
    with NotificationReceiver.start(hang_seconds=6.0) as receiver:
        yield receiver
