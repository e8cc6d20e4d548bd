"""
The desk's two roles, as Django groups with exactly these permissions:

- **Support**: view payments, refunds, disputes and Stripe's webhook events; add
  refunds (the refund form); capture or void authorizations.
- **Finance**: view payments, refunds and disputes, and every `view_*` permission
  of the `ledger` app (its finance report included, `ledger.view_finance_report`)
  when that app is installed: computed by app label, so it works without it.

`ensure_desk_groups` makes them, and sets their permissions to exactly these,
every time `migrate` ends (a post_migrate receiver, so a fresh database and a
flushed test database have them) and from `create_demo_users`. Idempotent.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

SUPPORT = "Support"
FINANCE = "Finance"

SUPPORT_PERMISSIONS = (
    ("payments", "view_payment"),
    ("payments", "view_dispute"),
    ("refunds", "view_refund"),
    ("webhooks", "view_webhookevent"),
    ("refunds", "add_refund"),
    ("payments", "capture_payment"),
)
FINANCE_PERMISSIONS = (
    ("payments", "view_payment"),
    ("payments", "view_dispute"),
    ("refunds", "view_refund"),
)
# Every view permission of these apps also goes to Finance (the ledger and its report).
FINANCE_APPS = ("ledger",)


def _matching(pairs, *, view_apps=()) -> list[Permission]:
    match = Q(pk__in=[])
    for app_label, codename in pairs:
        match |= Q(content_type__app_label=app_label, codename=codename)
    for app_label in view_apps:
        match |= Q(content_type__app_label=app_label, codename__startswith="view_")
    return list(Permission.objects.filter(match))


def desk_group_permissions() -> dict[str, list[Permission]]:
    """Each desk group's name and the permissions it holds (those that exist in this database)."""
    return {
        SUPPORT: _matching(SUPPORT_PERMISSIONS),
        FINANCE: _matching(FINANCE_PERMISSIONS, view_apps=FINANCE_APPS),
    }


def ensure_desk_groups() -> dict[str, Group]:
    """Create the Support and Finance groups if missing and set their permissions to exactly the desk's."""
    groups = {}
    for name, permissions in desk_group_permissions().items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(permissions)
        groups[name] = group
    return groups


def desk_groups_after_migrate(sender, using="default", **kwargs) -> None:
    """
    post_migrate, sent once per app: after each app whose permissions the groups
    hold, its permissions are made (auth's own receiver may run after this one)
    and the groups set again, so the last of them leaves them complete.
    """
    concerned = {app_label for app_label, _ in SUPPORT_PERMISSIONS + FINANCE_PERMISSIONS} | set(FINANCE_APPS)
    if sender.label not in concerned:
        return
    create_permissions(sender, verbosity=0, using=using, apps=kwargs.get("apps", global_apps))
    ensure_desk_groups()
