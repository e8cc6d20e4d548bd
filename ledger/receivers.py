"""
How the books hear of Stripe's money movements without importing the webhooks app
(the house's layers): the `core.signals.stripe_event_applied` signal, sent once an
event is applied, and the refunds' own saves (localstripe sends no refund events,
and a refund the desk made is known here before any event). Each queues a job
once the transaction that recorded the news has committed: the job reads Stripe,
which must never happen under a lock. A job lost to a crash right after the
commit is made up by the periodic `sync_ledger`.
"""

from __future__ import annotations

import logging
import time

from django.db import transaction
from django.db.models.signals import post_save
from procrastinate import exceptions as procrastinate_exceptions

import core.stripe_gateway as stripe_gateway
from core.signals import stripe_event_applied
from refunds.models import Refund

logger = logging.getLogger(__name__)

# Event types whose object (or the charge it names) moved money at Stripe.
CHARGE_EVENTS = {"charge.succeeded", "charge.captured", "charge.refunded", "charge.updated"}
REFUND_EVENTS = {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
RECONCILE_EVENTS = {"payout.paid", "payout.reconciliation_completed", "payout.failed", "payout.canceled"}


def sources_of_event(event_type: str, stripe_object: dict) -> list[str]:
    """The Stripe ids whose balance transactions an applied event of `event_type` may have added. Pure."""
    if event_type == "payment_intent.succeeded":
        charge = stripe_gateway.id_of(stripe_object.get("latest_charge"))
        return [charge] if charge else []
    if event_type in CHARGE_EVENTS or event_type in REFUND_EVENTS or event_type.startswith("charge.dispute."):
        return [stripe_object["id"]] if stripe_object.get("id") else []
    return []


def event_applied(sender, *, event_type: str, stripe_object: dict, outcome: str, **kwargs) -> None:
    """Queue the books' job for an applied event: a fetch by source, or a payout's reconciliation."""
    if event_type.startswith("payout.") and stripe_object.get("id"):
        _defer_after_commit("reconcile", stripe_object["id"])
        return
    if event_type == "balance.available":
        # Stripe's balance changed: read what is new since the last sync.
        _defer_after_commit("sync", "")
        return
    if outcome != "processed":
        return
    for source_id in sources_of_event(event_type, stripe_object):
        _defer_after_commit("fetch", source_id)


def refund_saved(sender, *, instance: Refund, **kwargs) -> None:
    """A refund Stripe has made: fetch its balance transaction."""
    if instance.status == Refund.Status.SUCCEEDED and instance.stripe_refund_id:
        _defer_after_commit("fetch", instance.stripe_refund_id)


def _defer_after_commit(kind: str, stripe_id: str) -> None:
    """After the commit: a `fetch` of a source's transactions, a payout's `reconcile`, or a `sync`."""
    from ledger import tasks

    def defer() -> None:
        try:
            # A savepoint: a refused duplicate must not end a surrounding transaction.
            with transaction.atomic():
                if kind == "sync":
                    # The periodic job's own queueing lock: never two waiting.
                    tasks.sync_ledger.defer(timestamp=int(time.time()))
                elif kind == "reconcile":
                    tasks.reconcile_payout.configure(queueing_lock=f"ledger:{stripe_id}").defer(payout_id=stripe_id)
                else:
                    tasks.fetch_balance_transactions.configure(queueing_lock=f"ledger:{stripe_id}").defer(
                        source_id=stripe_id
                    )
        except procrastinate_exceptions.AlreadyEnqueued:
            # A job for it is waiting already: it reads Stripe after this news too.
            pass
        except Exception:
            logger.warning("Could not queue the books' %s job for %s; sync_ledger will", kind, stripe_id, exc_info=True)

    transaction.on_commit(defer)


def connect() -> None:
    """Listen (ledger's AppConfig.ready): applied Stripe events, and saved refunds."""
    stripe_event_applied.connect(event_applied, dispatch_uid="ledger.event_applied")
    post_save.connect(refund_saved, sender=Refund, dispatch_uid="ledger.refund_saved")
