"""Security rules that hold across the site: deployment checks and CSRF on session-authenticated writes."""

import subprocess
import sys

import pytest
from rest_framework.test import APIClient

from payments.models import Payment
from payments.tests.test_site import ROOT, run_django_env

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
