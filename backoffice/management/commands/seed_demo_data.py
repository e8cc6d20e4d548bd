"""
`manage.py seed_demo_data --payments N`: fill the database with realistic demo
data fast, for demos of the support desk and for benchmarks/admin_pages.py.

Rows are built as model instances (so every field gets its model default) and
written with PostgreSQL's COPY through psycopg 3, in chunks of one transaction
each, with progress shown. The books stay consistent: each payment's refunded
amount is the sum of its succeeded refunds and its status follows it. Only
ever adds rows (new demo customers each run); it never touches existing ones.
"""

import random
import time
import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from payments.currencies import get_currency
from payments.models import Dispute, Payment
from refunds.models import Refund
from webhooks.models import WebhookEvent

# How often each currency and each status of a payment that was not refunded turns up.
CURRENCY_WEIGHTS = {"usd": 60, "eur": 20, "gbp": 8, "jpy": 5, "cad": 4, "aud": 3}
STATUS_WEIGHTS = {
    Payment.Status.SUCCEEDED: 78,
    Payment.Status.FAILED: 8,
    Payment.Status.CANCELED: 5,
    Payment.Status.REQUIRES_PAYMENT_METHOD: 5,
    Payment.Status.REQUIRES_ACTION: 2,
    Payment.Status.PROCESSING: 2,
    # Authorized, to be captured when the order ships (a few expire within the day).
    Payment.Status.REQUIRES_CAPTURE: 1,
}
REFUND_STATUS_WEIGHTS = {Refund.Status.SUCCEEDED: 95, Refund.Status.PENDING: 3, Refund.Status.FAILED: 2}
DISPUTE_STATUSES = (
    Dispute.Status.NEEDS_RESPONSE,
    Dispute.Status.UNDER_REVIEW,
    Dispute.Status.WON,
    Dispute.Status.LOST,
    Dispute.Status.WARNING_NEEDS_RESPONSE,
)


def copy_rows(model, instances) -> None:
    """COPY the instances into the model's table: every concrete field, prepared as the ORM would."""
    # A serial id is left to the database.
    fields = [f for f in model._meta.concrete_fields if f is not model._meta.auto_field]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for instance in instances:
            copy.write_row([f.get_db_prep_save(getattr(instance, f.attname), connection) for f in fields])


def weighted(rng: random.Random, weights: dict):
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def new_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


class Command(BaseCommand):
    help = "Add N demo payments (with customers, refunds, disputes and webhook events) quickly, via COPY."

    def add_arguments(self, parser):
        parser.add_argument("--payments", type=int, required=True, help="How many payments to add.")
        parser.add_argument("--refunds", type=int, help="How many refunds (default: a fifth of the payments).")
        parser.add_argument("--customers", type=int, help="How many customers (default: one per 50 payments).")
        parser.add_argument("--events", type=int, help="How many webhook events (default: a tenth of the payments).")
        parser.add_argument("--days", type=int, default=90, help="Spread the payments over this many past days.")
        parser.add_argument("--chunk", type=int, default=50_000, help="Rows per COPY and per transaction.")
        parser.add_argument("--seed", type=int, help="Random seed, for the same data twice.")

    def handle(self, *args, **options):
        total = options["payments"]
        if total < 1:
            raise CommandError("--payments must be at least 1.")
        refunds = total // 5 if options["refunds"] is None else options["refunds"]
        events = total // 10 if options["events"] is None else options["events"]
        customers = options["customers"] or max(total // 50, 1)
        paid_share = STATUS_WEIGHTS[Payment.Status.SUCCEEDED] / sum(STATUS_WEIGHTS.values())
        if refunds > total * paid_share:
            raise CommandError(f"At most {int(total * paid_share):,} refunds fit on {total:,} payments (one each).")
        self.rng = random.Random(options["seed"])
        self.now = timezone.now()
        self.days = options["days"]
        started = time.monotonic()

        user_ids = self.create_customers(customers)
        counts = {"payments": 0, "refunds": 0, "disputes": 0, "events": 0}
        chunk = options["chunk"]
        for offset in range(0, total, chunk):
            size = min(chunk, total - offset)
            remaining = total - offset
            # Spread refunds and events evenly over the chunks, rounding so the totals come out exact.
            wanted = {
                "refunds": round((refunds - counts["refunds"]) * size / remaining),
                "events": round((events - counts["events"]) * size / remaining),
            }
            with transaction.atomic():
                made = self.seed_chunk(size, user_ids, wanted)
            for name, count in made.items():
                counts[name] += count
            elapsed = time.monotonic() - started
            self.stdout.write(
                f"  {counts['payments']:>10,} / {total:,} payments  {counts['refunds']:,} refunds  "
                f"{counts['disputes']:,} disputes  {counts['events']:,} events  "
                f"({counts['payments'] / elapsed:,.0f} payments/s)"
            )
        with connection.cursor() as cursor:
            for model in (get_user_model(), Payment, Refund, Dispute, WebhookEvent):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Added {customers:,} customers, {counts['payments']:,} payments, {counts['refunds']:,} refunds, "
                f"{counts['disputes']:,} disputes and {counts['events']:,} webhook events "
                f"in {time.monotonic() - started:.1f} s."
            )
        )

    def create_customers(self, count: int) -> list[int]:
        User = get_user_model()
        run = uuid.uuid4().hex[:8]
        users = [
            User(
                username=f"demo-{run}-{n}",
                email=f"customer{n}.{run}@example.com",
                password="!",  # unusable: demo customers never sign in
                date_joined=self.now,
            )
            for n in range(count)
        ]
        User.objects.bulk_create(users, batch_size=5000)
        self.stdout.write(f"  {count:,} demo customers (demo-{run}-*)")
        return list(User.objects.filter(username__startswith=f"demo-{run}-").values_list("pk", flat=True))

    def seed_chunk(self, size: int, user_ids: list[int], wanted: dict[str, int]) -> dict[str, int]:
        rng = self.rng
        payments = [self.payment(rng.choice(user_ids)) for _ in range(size)]
        paid = [p for p in payments if p.status == Payment.Status.SUCCEEDED]
        refunds = [self.refund(p) for p in rng.sample(paid, min(wanted["refunds"], len(paid)))]
        disputes = [self.dispute(p) for p in rng.sample(paid, min(len(paid), len(paid) // 1000 + 1))]
        events = [self.event(rng.choice(payments)) for _ in range(wanted["events"])]
        copy_rows(Payment, payments)
        copy_rows(Refund, refunds)
        copy_rows(Dispute, disputes)
        copy_rows(WebhookEvent, events)
        return {"payments": size, "refunds": len(refunds), "disputes": len(disputes), "events": len(events)}

    def payment(self, user_id: int) -> Payment:
        rng = self.rng
        currency = weighted(rng, CURRENCY_WEIGHTS)
        created_at = self.now - timedelta(seconds=rng.uniform(0, self.days * 86400))
        payment_id = new_uuid(rng)
        status = weighted(rng, STATUS_WEIGHTS)
        amount = rng.randint(max(get_currency(currency).minimum or 0, 100), 50_000)
        authorized = status == Payment.Status.REQUIRES_CAPTURE
        charged = authorized or status in Payment.PAID
        order = rng.randint(10_000, 999_999)
        return Payment(
            id=payment_id,
            user_id=user_id,
            stripe_payment_intent_id=f"pi_demo{payment_id.hex[:20]}",
            amount=amount,
            amount_received=amount if status in Payment.PAID else 0,
            amount_capturable=amount if authorized else 0,
            capture_method=Payment.CaptureMethod.MANUAL if authorized else Payment.CaptureMethod.AUTOMATIC,
            # Authorized within the last week (7 days to capture), so some expire within the day.
            capture_before=self.now + timedelta(hours=rng.uniform(1, 168)) if authorized else None,
            order_reference=f"ORDER-{order}",
            customer_email=f"shopper{rng.randint(1, 50_000)}@example.com",
            card_brand="visa" if charged else "",
            card_last4=f"{rng.randint(0, 9999):04d}" if charged else "",
            currency=currency,
            status=status,
            idempotency_key=str(new_uuid(rng)),
            description=f"Order #{order}",
            failure_code="card_declined" if status == Payment.Status.FAILED else "",
            created_at=created_at,
            updated_at=created_at,
            stripe_state_at=created_at.replace(microsecond=0),
        )

    def refund(self, payment: Payment) -> Refund:
        """A refund of all or part of `payment`; a succeeded one moves the payment's books."""
        rng = self.rng
        amount = payment.amount if rng.random() < 0.4 else rng.randint(1, payment.amount - 1)
        status = weighted(rng, REFUND_STATUS_WEIGHTS)
        created_at = payment.created_at + timedelta(hours=rng.uniform(1, 240))
        if status == Refund.Status.SUCCEEDED:
            payment.set_refunded_amount(amount)
        refund_id = new_uuid(rng)
        return Refund(
            id=refund_id,
            payment=payment,
            stripe_refund_id=f"re_demo{refund_id.hex[:20]}" if status != Refund.Status.PENDING else None,
            amount=amount,
            status=status,
            reason=rng.choice(("", *Refund.Reason.values)),
            note=rng.choice(("", "Customer asked by email", "Item out of stock", "Goodwill gesture")),
            idempotency_key=str(refund_id),
            failure_reason="expired_or_canceled_card" if status == Refund.Status.FAILED else "",
            created_at=min(created_at, self.now),
            updated_at=min(created_at, self.now),
        )

    def dispute(self, payment: Payment) -> Dispute:
        created_at = min(payment.created_at + timedelta(days=self.rng.uniform(1, 20)), self.now)
        return Dispute(
            stripe_dispute_id=f"dp_demo{new_uuid(self.rng).hex[:20]}",
            payment=payment,
            amount=payment.amount,
            reason=self.rng.choice(("fraudulent", "product_not_received", "duplicate")),
            status=self.rng.choice(DISPUTE_STATUSES),
            evidence_due_by=created_at + timedelta(days=7),
            created_at=created_at,
            updated_at=created_at,
        )

    def event(self, payment: Payment) -> WebhookEvent:
        failed = self.rng.random() < 0.01
        event_id = f"evt_demo{new_uuid(self.rng).hex[:20]}"
        return WebhookEvent(
            stripe_event_id=event_id,
            type="payment_intent.succeeded",
            payload={
                "id": event_id,
                "type": "payment_intent.succeeded",
                "data": {"object": {"id": payment.stripe_payment_intent_id}},
            },
            object_id=payment.stripe_payment_intent_id,
            payment=payment,
            received_at=payment.created_at,
            processed_at=payment.created_at,
            outcome=WebhookEvent.Outcome.FAILED if failed else WebhookEvent.Outcome.PROCESSED,
            error="demo: handler raised" if failed else "",
        )
