"""The site around the API: health check, OpenAPI schema and docs, start-up checks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_home_page_links_to_the_back_office_and_the_api_docs(client):
    response = client.get("/")

    assert response.status_code == 200
    assert b'href="/admin/"' in response.content
    assert b'href="/api/docs/"' in response.content


@pytest.mark.browser
def test_home_page_renders_in_a_real_browser(live_server, page, screenshot):
    """Chromium loads the home page and follows its link to the API docs."""
    page.goto(live_server.url + "/")
    assert page.locator("h1").inner_text() == "paymentsite"

    page.click("text=API documentation")
    page.wait_for_selector(".swagger-ui", timeout=10_000)
    screenshot("api-docs")
    assert "/api/docs/" in page.url


@pytest.mark.django_db
def test_healthz_is_200_when_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["database"] == "up"


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_does_not(client):
    connection.close()
    real_port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = "1"  # nothing listens there
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port

    assert response.status_code == 503
    assert response.json()["database"] == "down"


@pytest.mark.django_db
def test_openapi_schema_describes_the_payments_api(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/payments/", "/api/payments/{payment_id}/", "/api/payments/{payment_id}/cancel/"} <= set(
        schema["paths"]
    )
    create = schema["paths"]["/api/payments/"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in create["parameters"])


@pytest.mark.django_db
def test_api_docs_are_served_without_any_cdn(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "https://" not in html and "//cdn" not in html
    asset = next(part.split('"')[0] for part in html.split('src="')[1:] if "swagger-ui-bundle" in part)
    assert client.get(asset).status_code == 200


def run_django_env(env_changes: dict[str, str]) -> dict[str, str]:
    """This process's environment without the test run's Django and Stripe settings, plus `env_changes`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "DEBUG"))}
    return {**env, "DJANGO_SETTINGS_MODULE": "paymentsite.settings", **env_changes}


def run_django(env_changes):
    """Start Django in a fresh process with the given environment; answers the process result."""
    env = run_django_env(env_changes)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


PRODUCTION_SECRETS = {
    "DJANGO_SECRET_KEY": "a-real-secret-Jx8#qL2!vR9@tZ4$wM7^pN3&hS6*kD5(fG1)bC0-yA+uE=",
    "STRIPE_SECRET_KEY": "sk_live_realkey",
}


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "STRIPE_SECRET_KEY"])
def test_with_debug_off_a_missing_secret_stops_start_up(missing, tmp_path):
    env = {k: v for k, v in PRODUCTION_SECRETS.items() if k != missing}

    result = run_django(env)

    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr
    assert "ImproperlyConfigured" in result.stderr


def test_an_env_file_is_read_and_the_tests_read_none(tmp_path):
    """ENV_FILE names the file settings read (DEBUG on there lets start-up use dev defaults); empty, none."""
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=true\n")

    assert run_django({"ENV_FILE": str(env_file)}).returncode == 0
    assert run_django({"ENV_FILE": ""}).returncode != 0


def test_with_debug_off_and_both_secrets_it_starts_and_logs_no_secret():
    result = run_django(PRODUCTION_SECRETS)

    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout
    assert "a-real-secret" not in result.stdout + result.stderr
    assert "sk_live_realkey" not in result.stdout + result.stderr


def test_with_debug_on_development_defaults_are_used():
    assert run_django({"DEBUG": "true"}).returncode == 0


def test_a_misplaced_key_is_refused_without_echoing_it():
    result = run_django({**PRODUCTION_SECRETS, "STRIPE_SECRET_KEY": "pk_live_oops"})

    assert result.returncode != 0
    assert "STRIPE_SECRET_KEY must start with" in result.stderr
    assert "pk_live_oops" not in result.stderr
