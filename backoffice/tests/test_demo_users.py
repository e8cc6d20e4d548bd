"""`create_demo_users` prints where the site runs (`make run PORT=...` passes it): links and curl are right."""

import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_the_demo_users_message_names_the_site_it_was_given(settings, fast_password_hashing):
    settings.DEBUG = True
    out = io.StringIO()

    call_command("create_demo_users", site_url="http://127.0.0.1:18001/", stdout=out)

    printed = out.getvalue()
    assert "http://127.0.0.1:18001/admin/" in printed
    assert "curl -s -X POST http://127.0.0.1:18001/api/payments/" in printed
    assert ":8000" not in printed
