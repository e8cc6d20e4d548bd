"""
The finance report (`/admin/ledger/payout/report/`), from the books only: per day
and per payout, gross, refunds, disputes, fees and net per currency, each payout's
own amount beside its transactions' net; the trial balance; CSV exports of the
journal and of each payout's lines. Only for `ledger.view_finance_report` (the
Finance group).

Every figure is in the currency's minor unit. Per day they come from the
per-account daily sums the database keeps (ledger_accountday), so the report
reads a few hundred rows whatever the number of payments; per payout, from the
sums its reconciliation stored.

Signs follow Stripe's balance transactions: gross is positive, refunds and
disputes negative (a won dispute's reversal brings them back up), fees positive
and subtracted: net = gross + refunds + disputes + other - fees.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property

from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.http import Http404, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views import View

from ledger.models import Account, AccountDay, BalanceTransaction, Payout, Posting
from payments.currencies import format_amount

REPORT_DAYS = 31
PAYOUTS_LISTED = 50
PERMISSION = "ledger.view_finance_report"


@dataclass
class Figures:
    """One row of the report: a day or a payout, in one currency (minor units)."""

    currency: str
    gross: int = 0
    refunds: int = 0
    disputes: int = 0
    other: int = 0
    fees: int = 0
    net: int = 0
    paid_out: int = 0

    @cached_property
    def shown(self) -> dict[str, str]:
        """Each amount formatted in its currency (for the page)."""
        names = ("gross", "refunds", "disputes", "other", "fees", "net", "paid_out", "payout_amount")
        return {name: format_amount(getattr(self, name), self.currency) for name in names if hasattr(self, name)}


@dataclass
class DayRow(Figures):
    day: date | None = None


@dataclass
class PayoutRow(Figures):
    payout: Payout | None = None
    payout_amount: int = 0

    @property
    def agrees(self) -> bool:
        return self.net == self.payout_amount


@dataclass
class TrialBalance:
    """Every account's balance per currency (debit positive); `totals` per currency, all zero."""

    rows: list[tuple[Account, int]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def shown_rows(self) -> list[tuple[Account, int, str]]:
        """(account, balance, the balance formatted in its currency)."""
        return [(account, amount, format_amount(amount, account.currency)) for account, amount in self.rows]

    @property
    def shown_totals(self) -> list[tuple[str, int, str]]:
        """(currency, total of its accounts, that total formatted in the currency): each total is zero."""
        return [(currency, total, format_amount(total, currency)) for currency, total in self.totals.items()]


def figures_from_accounts(currency: str, by_kind: dict[str, int]) -> Figures:
    """A report row from the summed postings of one currency's accounts (debit positive). Pure."""
    kind = Account.Kind
    fees = by_kind.get(kind.STRIPE_FEES, 0) + by_kind.get(kind.DISPUTE_FEES, 0)
    return Figures(
        currency=currency,
        gross=-by_kind.get(kind.SALES, 0),
        refunds=-by_kind.get(kind.REFUNDS, 0),
        disputes=-by_kind.get(kind.DISPUTES, 0),
        other=-by_kind.get(kind.OTHER, 0),
        fees=fees,
        # The balance moved by all but payouts: what Stripe's balance got, before paying out.
        net=by_kind.get(kind.STRIPE_BALANCE, 0) + by_kind.get(kind.BANK, 0),
        paid_out=by_kind.get(kind.BANK, 0),
    )


def daily_figures(*, since: date, until: date) -> list[DayRow]:
    """Per day (newest first) and currency, from `since` to `until` included (days of Stripe's `created`, UTC)."""
    sums: dict[tuple[date, str], dict[str, int]] = defaultdict(dict)
    rows = (
        AccountDay.objects.filter(day__gte=since, day__lte=until)
        .values_list("day", "account__currency", "account__kind")
        .annotate(total=Sum("amount"))
    )
    for day, currency, kind, total in rows:
        sums[(day, currency)][kind] = total
    answer = []
    for (day, currency), by_kind in sorted(sums.items(), key=lambda item: (item[0][0], item[0][1]), reverse=True):
        figures = figures_from_accounts(currency, by_kind)
        answer.append(DayRow(**vars(figures), day=day))
    return answer


def payout_figures(*, limit: int = PAYOUTS_LISTED) -> list[PayoutRow]:
    """The latest payouts, each with its transactions' figures (as its reconciliation summed them) and its amount."""
    rows = []
    for payout in Payout.objects.order_by("-stripe_created")[:limit]:
        rows.append(
            PayoutRow(
                currency=payout.currency,
                gross=payout.gross,
                refunds=payout.refunds,
                disputes=payout.disputes,
                fees=payout.fees,
                net=payout.net,
                other=payout.net - (payout.gross + payout.refunds + payout.disputes - payout.fees),
                paid_out=payout.amount,
                payout=payout,
                payout_amount=payout.amount,
            )
        )
    return rows


def trial_balance() -> TrialBalance:
    """Every account's balance (the sum of its daily sums); the Stripe balance is what Stripe holds not paid out."""
    balances = dict(AccountDay.objects.values_list("account_id").annotate(total=Sum("amount")))
    result = TrialBalance()
    for account in Account.objects.order_by("currency", "kind"):
        amount = balances.get(account.pk, 0)
        result.rows.append((account, amount))
        result.totals[account.currency] = result.totals.get(account.currency, 0) + amount
    return result


# --- Pages -------------------------------------------------------------------------


class FinanceView(View):
    """The report page; `?since=YYYY-MM-DD&until=YYYY-MM-DD` choose the days (default: the last 31)."""

    admin_site = None

    def get(self, request):
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        today = timezone.now().date()
        until = _date(request.GET.get("until")) or today
        since = _date(request.GET.get("since")) or until - timedelta(days=REPORT_DAYS - 1)
        context = {
            **self.admin_site.each_context(request),
            "title": "Finance report",
            "since": since,
            "until": until,
            "days": daily_figures(since=since, until=until),
            "payouts": payout_figures(),
            "trial_balance": trial_balance(),
        }
        return TemplateResponse(request, "admin/ledger/finance_report.html", context)


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_response(filename: str, header: list[str], rows) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


JOURNAL_HEADER = ["entry", "day", "description", "balance_transaction", "account", "currency", "debit", "credit"]
LINES_HEADER = [
    "balance_transaction",
    "created",
    "type",
    "reporting_category",
    "source",
    "payment_intent",
    "amount",
    "fee",
    "net",
    "currency",
    "matched",
]


class JournalCsvView(View):
    """The journal as CSV, one line per posting (minor units), for `?since=&until=` days (default: all)."""

    def get(self, request):
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        postings = Posting.objects.select_related("entry__balance_transaction", "account").order_by("entry_id", "id")
        since, until = _date(request.GET.get("since")), _date(request.GET.get("until"))
        if since:
            postings = postings.filter(occurred_on__gte=since)
        if until:
            postings = postings.filter(occurred_on__lte=until)

        def rows():
            for posting in postings.iterator(chunk_size=2000):
                txn = posting.entry.balance_transaction
                yield [
                    posting.entry_id,
                    posting.occurred_on.isoformat(),
                    posting.entry.description,
                    txn.stripe_id if txn else "",
                    posting.account.kind,
                    posting.currency,
                    posting.amount if posting.amount > 0 else "",
                    -posting.amount if posting.amount < 0 else "",
                ]

        return _csv_response("journal.csv", JOURNAL_HEADER, rows())


class PayoutLinesCsvView(View):
    """One payout's balance transactions as CSV (minor units), its own transaction included."""

    def get(self, request, object_id):
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        payout = Payout.objects.filter(pk=object_id).first()
        if payout is None:
            raise Http404("No such payout.")
        lines = BalanceTransaction.objects.filter(payout=payout).order_by("stripe_created", "id")

        def rows():
            for txn in lines.iterator(chunk_size=2000):
                matched = (
                    f"refund {txn.refund_id}"
                    if txn.refund_id
                    else f"dispute {txn.dispute_id}"
                    if txn.dispute_id
                    else f"payment {txn.payment_id}"
                    if txn.payment_id
                    else ""
                )
                yield [
                    txn.stripe_id,
                    txn.stripe_created.isoformat(),
                    txn.type,
                    txn.reporting_category,
                    txn.source_id,
                    txn.payment_intent_id,
                    txn.amount,
                    txn.fee,
                    txn.net,
                    txn.currency,
                    matched,
                ]

        return _csv_response(f"payout-{payout.stripe_payout_id}.csv", LINES_HEADER, rows())
