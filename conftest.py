"""
Fixtures shared by every app's tests: the local Stripe (one real process per
test session) and the three recurring users: an owner, an outsider and staff.
"""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from payments.fakestripe import FakeStripe
from payments.tests.factories import UserFactory


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


def api_client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def owner_api(owner):
    return api_client_for(owner)


@pytest.fixture
def outsider_api(outsider):
    return api_client_for(outsider)


@pytest.fixture
def staff_api(staff):
    return api_client_for(staff)
