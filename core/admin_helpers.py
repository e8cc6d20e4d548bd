"""
Helpers for admin pages over big tables, used by the support desk (backoffice/):
a paginator that does not count a million rows per page, a mixin that makes a
model view-only, exact-match search on indexed identifiers, and links to rows.

The paginator: a stock changelist runs COUNT(*) over the filtered rows (and again
over the whole table) on each request; at a million payments that count is most of
the page's time. EstimatedCountPaginator counts exactly up to a limit and, past it,
asks PostgreSQL's planner how many rows it expects: one EXPLAIN, no table scan.
"""

import json
import uuid

from django.core.paginator import Paginator
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html


class EstimatedCountPaginator(Paginator):
    # Below this many rows the count is exact (counting them takes a few ms).
    exact_count_limit = 10_000

    # Set by `count`: whether it is the planner's estimate rather than a count.
    estimated = False

    @cached_property
    def count(self) -> int:
        capped = self.object_list.order_by().values("pk")[: self.exact_count_limit + 1].count()
        if capped <= self.exact_count_limit:
            return capped
        self.estimated = True
        return max(capped, self._planner_estimate())

    def _planner_estimate(self) -> int:
        plan = json.loads(self.object_list.order_by().explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])


class ViewOnly:
    """
    No add, no change, no delete, for anyone, superusers included: money and
    statuses move only through the services (the API, the refund form, Stripe's
    news), never by editing a row.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def admin_link(obj, text=None):
    """A link to the object's admin page; plain text when its model has no admin here."""
    text = text if text is not None else str(obj.pk)
    try:
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return text
    return format_html('<a href="{}">{}</a>', url, text)


def search_by_identifiers(queryset, term: str, *, uuid_fields=(), text_fields=(), related=None):
    """
    Exact-match search on indexed identifiers, which is what staff have in hand
    (an id pasted from an email or from Stripe). A term that cannot be a UUID is
    never compared with a UUID column. `related` maps a foreign key to a function
    finding the related rows a term names (a user by email...): they are looked
    up first, so each branch of the OR uses an index of the searched table
    instead of a join over all of it.
    """
    term = term.strip()
    if not term:
        return queryset
    match = Q()
    for lookup in text_fields:
        match |= Q(**{lookup: term})
    try:
        as_uuid = uuid.UUID(term)
    except ValueError:
        pass
    else:
        for lookup in uuid_fields:
            match |= Q(**{lookup: as_uuid})
    for lookup, find in (related or {}).items():
        found = find(term)
        if found is not None:
            match |= Q(**{f"{lookup}__in": list(found.values_list("pk", flat=True)[:1000])})
    return queryset.filter(match)
