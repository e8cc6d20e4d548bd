"""API tokens (core.auth.TokenAuthentication): one statement, checked on every request."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

URL = "/api/payments/"


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.mark.django_db
def test_a_token_signs_its_user_in_with_one_statement(owner):
    """The token and its user come from one SELECT; the request is the token's user's."""
    token = Token.objects.create(user=owner)

    with CaptureQueriesContext(connection) as queries:
        response = client_with(token.key).get(URL)

    assert response.status_code == 200
    token_queries = [query["sql"] for query in queries.captured_queries if "authtoken_token" in query["sql"]]
    assert len(token_queries) == 1 and "auth_user" in token_queries[0]
    assert not any(query["sql"].startswith('SELECT "auth_user"') for query in queries.captured_queries)


@pytest.mark.django_db
def test_a_deleted_token_is_refused_at_once(owner):
    """Nothing is cached: the request after the deletion is a 401."""
    token = Token.objects.create(user=owner)
    client = client_with(token.key)
    assert client.get(URL).status_code == 200

    token.delete()
    response = client.get(URL)

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


@pytest.mark.django_db
def test_a_deactivated_user_is_refused_at_once(owner):
    token = Token.objects.create(user=owner)
    client = client_with(token.key)
    assert client.get(URL).status_code == 200

    owner.is_active = False
    owner.save()
    response = client.get(URL)

    assert response.status_code == 401
    assert response.json()["detail"] == "User inactive or deleted."


@pytest.mark.django_db
def test_an_unknown_or_malformed_token_is_401():
    assert client_with("0" * 40).get(URL).status_code == 401
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token a b")
    assert client.get(URL).status_code == 401
