"""
The desk's roles: a Support group with exactly the desk's permissions and a
Finance group that reads payments and the books, made by `migrate` and by
`create_demo_users`, idempotently; the demo users; and a Support user reaching
nothing outside the desk.
"""

import io

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.urls import NoReverseMatch, reverse

from backoffice.roles import FINANCE, SUPPORT, ensure_desk_groups
from payments.tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

SUPPORT_EXACTLY = {
    "payments.view_payment",
    "payments.view_dispute",
    "refunds.view_refund",
    "webhooks.view_webhookevent",
    "refunds.add_refund",
    "payments.capture_payment",
}
# The desk's lists a Support user opens; every other admin page is closed to them.
DESK_MODELS = {"payments.payment", "payments.dispute", "refunds.refund", "webhooks.webhookevent"}


def names(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


@pytest.mark.django_db
def test_migrate_leaves_the_support_group_with_exactly_the_desks_permissions():
    """The test database was made by `migrate`: its post_migrate made the groups."""
    assert names(Group.objects.get(name=SUPPORT)) == SUPPORT_EXACTLY


@pytest.mark.django_db
def test_finance_reads_payments_refunds_disputes_and_every_ledger_view():
    ledger_views = {
        f"ledger.{codename}"
        for codename in Permission.objects.filter(
            content_type__app_label="ledger", codename__startswith="view_"
        ).values_list("codename", flat=True)
    }

    assert (
        names(Group.objects.get(name=FINANCE))
        == {
            "payments.view_payment",
            "payments.view_dispute",
            "refunds.view_refund",
        }
        | ledger_views
    )


@pytest.mark.django_db
def test_finance_takes_the_ledgers_permissions_by_app_label():
    """Whatever models the ledger app has, Finance gets each view_* of it (the finance report's too), no other."""
    books = ContentType.objects.get_or_create(app_label="ledger", model="somebook")[0]
    Permission.objects.get_or_create(content_type=books, codename="view_somebook", defaults={"name": "View"})
    Permission.objects.get_or_create(
        content_type=books, codename="view_finance_report", defaults={"name": "View the finance report"}
    )
    Permission.objects.get_or_create(content_type=books, codename="change_somebook", defaults={"name": "Change"})

    finance = names(ensure_desk_groups()[FINANCE])

    assert {"ledger.view_somebook", "ledger.view_finance_report"} <= finance
    assert "ledger.change_somebook" not in finance


@pytest.mark.django_db
def test_setting_the_groups_again_changes_nothing_and_removes_what_was_added_by_hand():
    support = Group.objects.get(name=SUPPORT)
    support.permissions.add(Permission.objects.get(codename="change_user"))

    ensure_desk_groups()
    ensure_desk_groups()

    assert Group.objects.filter(name=SUPPORT).count() == 1
    assert names(Group.objects.get(name=SUPPORT)) == SUPPORT_EXACTLY


@pytest.mark.django_db
def test_demo_users_support_is_in_support_and_not_a_superuser(settings):
    settings.DEBUG = True
    out = io.StringIO()

    call_command("create_demo_users", stdout=out)
    call_command("create_demo_users", stdout=io.StringIO())

    support = UserFactory._meta.model.objects.get(username="support")
    operator = UserFactory._meta.model.objects.get(username="operator")
    finance = UserFactory._meta.model.objects.get(username="finance")
    assert support.is_staff and not support.is_superuser
    assert list(support.groups.values_list("name", flat=True)) == [SUPPORT]
    assert support.get_all_permissions() == SUPPORT_EXACTLY
    assert operator.is_superuser
    assert list(finance.groups.values_list("name", flat=True)) == [FINANCE] and not finance.is_superuser
    printed = out.getvalue()
    assert "support  / paymentsite-demo" in printed and "operator / paymentsite-demo" in printed
    assert "finance  / paymentsite-demo" in printed


@pytest.fixture
def support_client(client, db):
    user = UserFactory(username="sue", is_staff=True)
    user.groups.add(Group.objects.get(name=SUPPORT))
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_support_cannot_reach_users_groups_tokens_or_anything_outside_the_desk(support_client):
    opened, closed = set(), set()
    for model in admin.site._registry:
        label = f"{model._meta.app_label}.{model._meta.model_name}"
        try:
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        except NoReverseMatch:
            continue
        status = support_client.get(url).status_code
        (opened if status == 200 else closed).add(label)
        assert status in (200, 403), (label, status)

    assert opened == DESK_MODELS
    assert {"auth.user", "auth.group", "authtoken.tokenproxy"} <= closed
    for url in ("/admin/auth/user/add/", "/admin/auth/group/add/", "/admin/authtoken/tokenproxy/add/"):
        assert support_client.get(url).status_code == 403


@pytest.mark.django_db
def test_support_sees_only_the_desk_on_the_admin_index(support_client):
    body = support_client.get("/admin/").content.decode()

    assert "paymentsite back-office" in body
    assert reverse("admin:payments_payment_changelist") in body
    assert reverse("admin:auth_user_changelist") not in body
    assert reverse("admin:auth_group_changelist") not in body


@pytest.mark.django_db
def test_the_demo_finance_user_reads_the_finance_report_and_support_does_not(client, settings):
    """The Finance group carries the ledger's report permission; the Support group does not."""
    settings.DEBUG = True
    call_command("create_demo_users", stdout=io.StringIO())
    User = get_user_model()

    client.force_login(User.objects.get(username="finance"))
    assert client.get("/admin/ledger/payout/report/").status_code == 200

    client.force_login(User.objects.get(username="support"))
    assert client.get("/admin/ledger/payout/report/").status_code == 403
