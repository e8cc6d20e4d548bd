"""
Sign-in is throttled per account and per address (django-axes): after
SIGNIN_FAILURE_LIMIT failures the account, or the address, is locked for
SIGNIN_LOCKOUT_MINUTES, even for the right password, with a page that says so.
The customers' sign-in (/accounts/login/) and the admin's alike.
"""

import pytest

from payments.tests.factories import UserFactory

SIGN_INS = ["/accounts/login/", "/admin/login/"]
LIMIT = 3


@pytest.fixture(autouse=True)
def small_limit(settings, fast_password_hashing):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.SIGNIN_LOCKOUT_MINUTES = 15


@pytest.fixture
def accounts(db):
    """A customer and a staff member, each with a known password."""
    return {
        "/accounts/login/": UserFactory(username="shop", password="right-password"),
        "/admin/login/": UserFactory(username="support", password="right-password", is_staff=True),
    }


def sign_in(client, url, username, password, address="203.0.113.7", **headers):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address, **headers)


def signed_in(response) -> bool:
    return response.status_code == 302 and "login" not in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", SIGN_INS)
def test_after_the_limit_even_the_right_password_is_refused_with_a_clear_page(client, accounts, url):
    username = accounts[url].username
    for _ in range(LIMIT):
        assert not signed_in(sign_in(client, url, username, "wrong"))

    response = sign_in(client, url, username, "right-password")

    assert response.status_code == 429
    assert response["Retry-After"] == str(15 * 60)
    page = response.content.decode()
    assert "Too many failed sign-ins (3)" in page and "locked for 15 minutes" in page
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
@pytest.mark.parametrize("url", SIGN_INS)
def test_below_the_limit_the_right_password_signs_in(client, accounts, url):
    username = accounts[url].username
    for _ in range(LIMIT - 1):
        sign_in(client, url, username, "wrong")

    assert signed_in(sign_in(client, url, username, "right-password"))


@pytest.mark.django_db
@pytest.mark.parametrize("url", SIGN_INS)
def test_the_account_is_locked_whatever_address_the_guesses_come_from(client, accounts, url):
    username = accounts[url].username
    for n in range(LIMIT):
        sign_in(client, url, username, "wrong", address=f"198.51.100.{n + 1}")

    response = sign_in(client, url, username, "right-password", address="192.0.2.50")

    assert response.status_code == 429


@pytest.mark.django_db
@pytest.mark.parametrize("url", SIGN_INS)
def test_an_address_guessing_many_accounts_is_locked_for_every_account(client, accounts, url):
    for n in range(LIMIT):
        sign_in(client, url, f"guess{n}", "wrong")

    locked = sign_in(client, url, accounts[url].username, "right-password")
    elsewhere = sign_in(client, url, accounts[url].username, "right-password", address="192.0.2.50")

    assert locked.status_code == 429
    assert signed_in(elsewhere)


@pytest.mark.django_db
def test_a_forged_x_forwarded_for_does_not_escape_the_address_lock(client, accounts):
    """Without BEHIND_PROXY the header is anyone's to write: the connection's address counts."""
    for n in range(LIMIT):
        sign_in(client, "/accounts/login/", f"guess{n}", "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")

    response = sign_in(client, "/accounts/login/", "shop", "right-password", HTTP_X_FORWARDED_FOR="10.9.9.9")

    assert response.status_code == 429


@pytest.mark.django_db
def test_behind_a_proxy_the_address_it_forwards_counts(client, accounts, settings):
    """With BEHIND_PROXY the last X-Forwarded-For entry (the proxy's own) is the client; not the proxy's address."""
    settings.BEHIND_PROXY = True
    for n in range(LIMIT):
        sign_in(client, "/accounts/login/", f"guess{n}", "wrong", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")

    blocked = sign_in(client, "/accounts/login/", "shop", "right-password", HTTP_X_FORWARDED_FOR="203.0.113.9")
    other_client = sign_in(client, "/accounts/login/", "shop", "right-password", HTTP_X_FORWARDED_FOR="192.0.2.8")

    assert blocked.status_code == 429
    assert signed_in(other_client)


@pytest.mark.django_db
def test_a_success_below_the_limit_starts_the_count_again(client, accounts):
    for _ in range(LIMIT - 1):
        sign_in(client, "/accounts/login/", "shop", "wrong")
    assert signed_in(sign_in(client, "/accounts/login/", "shop", "right-password"))
    client.logout()

    for _ in range(LIMIT - 1):
        sign_in(client, "/accounts/login/", "shop", "wrong")

    assert signed_in(sign_in(client, "/accounts/login/", "shop", "right-password"))
