"""
Who may do what in the support desk: anonymous visitors nothing; staff who may
view payments see everything but cannot refund; staff with `refunds.add_refund`
(and superusers) also see the Refund button and reach the refund page.
"""

import pytest
from django.urls import reverse

from payments.tests.factories import UserFactory
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

READ_PAGES = {
    "list": lambda p: reverse("admin:payments_payment_changelist"),
    "payment": lambda p: reverse("admin:payments_payment_change", args=[p.pk]),
    "dashboard": lambda p: reverse("admin:payments_dashboard"),
    "export": lambda p: reverse("admin:payments_payment_export"),
    "refunds": lambda p: reverse("admin:refunds_refund_changelist"),
    "disputes": lambda p: reverse("admin:payments_dispute_changelist"),
}


def refund_url(payment) -> str:
    return reverse("admin:payments_payment_refund", args=[payment.pk])


@pytest.fixture
def payment(db):
    return PaidPaymentFactory(amount=2000)


@pytest.fixture
def as_user(client, request):
    """A client signed in as the named fixture's user (None: anonymous)."""

    def sign_in(fixture_name):
        if fixture_name is not None:
            client.force_login(request.getfixturevalue(fixture_name))
        return client

    return sign_in


@pytest.mark.django_db
@pytest.mark.parametrize("page", READ_PAGES)
def test_anonymous_is_sent_to_the_login_page(client, payment, page):
    for url in (READ_PAGES[page](payment), refund_url(payment)):
        response = client.get(url)

        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_anonymous_cannot_refund(client, payment):
    response = client.post(refund_url(payment), {"amount": "20.00", "token": "t", "confirm": "yes"})

    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not Refund.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("user", ["support_viewer", "support_refunder", "superuser"])
@pytest.mark.parametrize("page", READ_PAGES)
def test_support_staff_see_every_page(as_user, payment, user, page):
    assert as_user(user).get(READ_PAGES[page](payment)).status_code == 200


@pytest.mark.django_db
def test_staff_without_view_permissions_see_nothing(client, payment):
    client.force_login(UserFactory(is_staff=True))

    for page in READ_PAGES.values():
        assert client.get(page(payment)).status_code == 403


@pytest.mark.django_db
def test_viewer_sees_no_refund_button_and_cannot_reach_the_refund_page(as_user, payment):
    client = as_user("support_viewer")

    page = client.get(READ_PAGES["payment"](payment)).content.decode()
    shown = client.get(refund_url(payment))
    posted = client.post(refund_url(payment), {"amount": "20.00", "token": "t", "confirm": "yes"})

    assert refund_url(payment) not in page
    assert shown.status_code == 403
    assert posted.status_code == 403
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_refund_permission_alone_does_not_open_the_desk(client, staff, payment):
    """`refunds.add_refund` without the right to view payments reaches neither the payment nor its refund page."""
    client.force_login(staff)

    assert client.get(READ_PAGES["payment"](payment)).status_code == 403
    assert client.get(refund_url(payment)).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("user", ["support_refunder", "superuser"])
def test_refunders_see_the_button_and_the_form(as_user, payment, user):
    client = as_user(user)

    page = client.get(READ_PAGES["payment"](payment)).content.decode()
    form = client.get(refund_url(payment))

    assert f'href="{refund_url(payment)}"' in page
    assert form.status_code == 200
    assert 'name="amount"' in form.content.decode()


@pytest.mark.django_db
def test_no_refund_button_on_a_payment_that_cannot_be_refunded(as_user):
    failed = PaidPaymentFactory(status="failed")
    client = as_user("support_refunder")

    page = client.get(READ_PAGES["payment"](failed)).content.decode()
    form = client.get(refund_url(failed), follow=True)

    assert refund_url(failed) not in page
    assert "cannot be refunded: it is failed" in form.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("user", ["support_viewer", "support_refunder", "superuser"])
def test_nobody_adds_changes_or_deletes_refunds_in_the_admin(as_user, user):
    """Refunds are made from the payment's page only, and never edited."""
    client = as_user(user)

    assert client.get(reverse("admin:refunds_refund_add")).status_code == 403
    assert client.get(reverse("admin:payments_dispute_add")).status_code == 403
