"""Security rules that hold across the site: deployment checks and CSRF on session-authenticated writes."""

import json
import subprocess
import sys

import pytest
import requests
from django.conf import settings
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from devkit.siteserver import TEST_SECRET_KEY, TEST_STRIPE_KEY, TEST_WEBHOOK_SECRET, SiteServer
from payments.models import Payment
from payments.tests.test_site import ROOT, run_django_env
from refunds.tests.factories import paid_payment_at_stripe
from webhooks.tests.factories import payment_intent_event, sign

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECURE_SSL": "true",
    "ALLOWED_HOSTS": "pay.example.com",
    # 50+ characters with many distinct ones, as `check --deploy` asks of a real key.
    "DJANGO_SECRET_KEY": "x7#Kq2!vLr9@Tz4$Wm8^Pn3&Hs6*Jd5(Gf1)Cb0-Ya+Ue=Xo_Ri]Nt[Ml",
    "STRIPE_SECRET_KEY": "sk_live_productionlike",
    "STRIPE_WEBHOOK_SECRET": "whsec_productionlike",
}


def test_check_deploy_with_production_settings_gives_no_warning():
    """`manage.py check --deploy` with DEBUG off, TLS on and real-looking secrets passes at WARNING level."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=run_django_env(PRODUCTION_ENV),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.fixture
def owner_session(owner):
    """A browser-like client: signed in with a session cookie, CSRF checked as in production."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(owner)
    return client


@pytest.mark.django_db
def test_a_session_authenticated_write_without_the_csrf_token_is_refused(owner_session, fake_stripe):
    response = owner_session.post(
        "/api/payments/", {"amount": 2000, "currency": "usd"}, format="json", HTTP_IDEMPOTENCY_KEY="csrf-1"
    )

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_a_session_authenticated_write_with_the_csrf_token_goes_through(owner_session, fake_stripe):
    # What a page does: the token from the csrftoken cookie goes back in the X-CSRFToken header.
    token = "t" * 32
    owner_session.cookies["csrftoken"] = token

    response = owner_session.post(
        "/api/payments/",
        {"amount": 2000, "currency": "usd"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="csrf-2",
        HTTP_X_CSRFTOKEN=token,
    )

    assert response.status_code == 201


# --- Logs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site_logging_everything(django_db_setup, fake_stripe_server):
    """The site under gunicorn, logging at DEBUG, on the test database."""
    with SiteServer.start(
        database_name=connection.settings_dict["NAME"],
        stripe_api_base=fake_stripe_server.api_base,
        extra_env={"LOG_LEVEL": "DEBUG"},
    ) as site:
        yield site


@pytest.mark.django_db(transaction=True)
def test_a_full_run_logs_no_secret(site_logging_everything, owner, owner_api, staff, fake_stripe):
    """Pay, fail, refund, cancel, take good and bad webhooks: the server's log holds no key or client secret."""
    site = site_logging_everything
    owner_token = Token.objects.get_or_create(user=owner)[0].key
    staff_token = Token.objects.get_or_create(user=staff)[0].key
    as_owner = {"Authorization": f"Token {owner_token}"}

    created = requests.post(
        site.url + "/api/payments/",
        json={"amount": 2000, "currency": "usd"},
        headers={**as_owner, "Idempotency-Key": "log-1"},
        timeout=30,
    ).json()
    fake_stripe.add_fault("error500", path="/v1/payment_intents$", times=1)
    failed = requests.post(
        site.url + "/api/payments/",
        json={"amount": 3000, "currency": "usd"},
        headers={**as_owner, "Idempotency-Key": "log-2"},
        timeout=30,
    )
    requests.post(site.url + f"/api/payments/{created['id']}/cancel/", headers=as_owner, timeout=30)
    paid = paid_payment_at_stripe(owner_api, amount=5000)
    refunded = requests.post(
        site.url + f"/api/payments/{paid.id}/refunds/",
        json={"amount": 1000, "note": "log check"},
        headers={"Authorization": f"Token {staff_token}", "Idempotency-Key": "log-refund"},
        timeout=30,
    )
    event = json.dumps(payment_intent_event("payment_intent.succeeded", paid))
    webhook = requests.post(
        site.url + "/webhooks/stripe/", data=event, headers={"Stripe-Signature": sign(event)}, timeout=30
    )
    forged = requests.post(
        site.url + "/webhooks/stripe/", data=event, headers={"Stripe-Signature": "t=1,v1=forged"}, timeout=30
    )
    site.stop(keep_log=True)  # flush and close the log before reading it

    assert failed.status_code == 502 and refunded.status_code == 201
    assert webhook.status_code == 200 and forged.status_code == 400
    log = site.log_text()
    assert "Internal Server Error" not in log
    assert "Stripe call failed" in log and "Refused a webhook" in log  # the run did log
    for secret in (
        settings.STRIPE_SECRET_KEY,
        TEST_STRIPE_KEY,
        settings.STRIPE_WEBHOOK_SECRET,
        TEST_WEBHOOK_SECRET,
        TEST_SECRET_KEY,
        created["client_secret"],
        owner_token,
        staff_token,
    ):
        assert secret not in log


# --- Nobody reaches another user's payment -----------------------------------------


def payment_paths() -> list[str]:
    """Every API path about one payment, from the OpenAPI schema (new endpoints join by themselves)."""
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return sorted(path for path in paths if "{payment_id}" in path)


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_another_users_payment_answers_exactly_like_no_payment(method, owner_api, outsider_api, fake_stripe):
    """
    For every endpoint about a payment and every method, the outsider's answer
    for the owner's payment is the answer for a payment that does not exist
    (never a 2xx, never a hint that it exists), and nothing changes.
    """
    paid = paid_payment_at_stripe(owner_api, amount=5000)
    before = (paid.status, paid.refunded_amount, paid.refunds.count())
    paths = payment_paths()
    assert len(paths) >= 3

    for path in paths:
        answers = []
        for payment_id in (paid.id, "00000000-0000-4000-8000-000000000000"):
            url = path.replace("{payment_id}", str(payment_id))
            response = getattr(outsider_api, method)(
                url, {"amount": 100}, format="json", HTTP_IDEMPOTENCY_KEY=f"outsider-{method}"
            )
            answers.append((response.status_code, response.json()))
        assert answers[0][0] in (403, 404, 405), (path, answers)
        assert answers[0] == answers[1], (path, answers)

    paid.refresh_from_db()
    assert (paid.status, paid.refunded_amount, paid.refunds.count()) == before
