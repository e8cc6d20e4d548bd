"""
HTTPS in production, seen from outside: the site under gunicorn with DEBUG off and
HTTPS on. gunicorn itself believes X-Forwarded-Proto from 127.0.0.1 (its
FORWARDED_ALLOW_IPS); told to believe no one, what the site decides is what is seen.
"""

import pytest
import requests
from django.db import connection

from devkit.siteserver import SiteServer


def serve(fake_stripe_server, **env):
    return SiteServer.start(
        database_name=connection.settings_dict["NAME"],
        stripe_api_base=fake_stripe_server.api_base,
        workers=1,
        extra_env={"SECURE_SSL": "true", "FORWARDED_ALLOW_IPS": "192.0.2.1", **env},
    )


@pytest.mark.django_db(transaction=True)
def test_a_forged_x_forwarded_proto_is_not_believed_without_a_proxy(fake_stripe_server):
    """Anyone can send `X-Forwarded-Proto: https`: plain HTTP is still sent to https (and /healthz still answers)."""
    with serve(fake_stripe_server) as site:
        forged = requests.get(
            site.url + "/api/payments/", headers={"X-Forwarded-Proto": "https"}, allow_redirects=False, timeout=10
        )
        health = requests.get(site.url + "/healthz", allow_redirects=False, timeout=10)

    assert forged.status_code == 301
    assert forged.headers["Location"].startswith("https://")
    assert health.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_behind_a_proxy_its_x_forwarded_proto_is_believed(fake_stripe_server):
    with serve(fake_stripe_server, BEHIND_PROXY="true") as site:
        via_proxy = requests.get(
            site.url + "/api/payments/", headers={"X-Forwarded-Proto": "https"}, allow_redirects=False, timeout=10
        )
        plain = requests.get(site.url + "/api/payments/", allow_redirects=False, timeout=10)

    assert via_proxy.status_code == 401  # reached the API: not signed in
    assert via_proxy.json()["code"] == "not_authenticated"
    assert "max-age=31536000" in via_proxy.headers["Strict-Transport-Security"]
    assert plain.status_code == 301
