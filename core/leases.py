"""
Leases: how a request says "I am calling Stripe for this row, keep off".

A row that is about to be sent to Stripe (a payment being created, a refund
being sent) records when its sender started, in a `stripe_call_started_at`
column. Another request with the same idempotency key, or a retry command,
leaves the row alone while that lease is live, so one Stripe call is in flight
per row at a time; once it has run for `seconds` the sender is presumed dead
and anyone may take the row over (resending the same Stripe idempotency key,
so a call that did reach Stripe is answered, not repeated).

The length is the caller's (a setting such as REFUND_CREATE_LEASE_SECONDS): this
module reads no settings. `now` is passed in so that one request uses one clock
reading for every check and write.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q


def lease_expired_before(seconds: int | float, now: datetime) -> datetime:
    """
    The moment before which a lease taken is no longer live at `now`: a lease of
    `seconds` started at or before it has run out.
    """
    return now - timedelta(seconds=seconds)


def lease_is_live(started_at: datetime | None, *, seconds: int | float, now: datetime) -> bool:
    """
    Whether a lease taken at `started_at` (None: no lease) and lasting `seconds`
    still holds at `now`. A lease taken exactly `seconds` ago has run out.
    """
    return started_at is not None and started_at > lease_expired_before(seconds, now)


def lease_not_live(field: str, *, seconds: int | float, now: datetime) -> Q:
    """
    A queryset condition for rows whose lease in `field` (a datetime column) is
    not live at `now`: never taken, or taken at least `seconds` ago. The same
    rule as `lease_is_live`, for the database.
    """
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lte": lease_expired_before(seconds, now)})
