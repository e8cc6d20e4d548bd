"""
Signals the apps send each other across the house's layers: a lower app defines
none it would need from a higher one, so they live here, below them all.
"""

from django.dispatch import Signal

# Sent by webhooks.services once a stored Stripe event has been applied (its
# outcome is final: `processed` or `ignored`, an unknown type included), inside the
# transaction that recorded the outcome. Keyword arguments: `event_type` (Stripe's
# `type`), `stripe_object` (the event's `data.object`, a dict), `outcome` (the
# WebhookEvent outcome) and `stripe_event_id`. Receivers must not call Stripe: they
# queue work for after the commit (the ledger queues its fetch jobs).
stripe_event_applied = Signal()
