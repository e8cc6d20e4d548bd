"""
The books in the admin, read-only: payouts (with their reconciliation and the CSV of
their lines), balance transactions, journal entries and the unmatched queue; and
the finance report (backoffice.finance), for the Finance group
(`ledger.view_finance_report` and the ledger's view permissions).
"""

from django.contrib import admin
from django.urls import path, reverse
from django.utils.html import format_html

from backoffice.finance import FinanceView, JournalCsvView, PayoutLinesCsvView
from core.admin_helpers import EstimatedCountPaginator, ViewOnly, search_by_identifiers
from ledger.models import Account, BalanceTransaction, Entry, Payout, Posting, UnmatchedItem
from payments.currencies import format_amount

# Stripe's reporting categories the books meet most (a filter's choices: no scan of the table).
REPORTING_CATEGORIES = (
    "charge",
    "refund",
    "dispute",
    "dispute_reversal",
    "payout",
    "payout_reversal",
    "fee",
    "other_adjustment",
)


class ReadOnlyAdmin(ViewOnly, admin.ModelAdmin):
    """Stripe's records and an append-only journal: nothing is added, changed or deleted here."""

    # Past 10,000 rows the planner's estimate, not a COUNT(*) of a million.
    paginator = EstimatedCountPaginator
    show_full_result_count = False


class CategoryFilter(admin.SimpleListFilter):
    title = "reporting category"
    parameter_name = "reporting_category"

    def lookups(self, request, model_admin):
        return [(category, category.replace("_", " ")) for category in REPORTING_CATEGORIES]

    def queryset(self, request, queryset):
        return queryset.filter(reporting_category=self.value()) if self.value() else queryset


class LedgerCurrencyFilter(admin.SimpleListFilter):
    """The currencies the journal has accounts in (a handful of rows), not a scan of the transactions."""

    title = "currency"
    parameter_name = "currency"

    def lookups(self, request, model_admin):
        currencies = Account.objects.order_by("currency").values_list("currency", flat=True).distinct()
        return [(currency, currency.upper()) for currency in currencies]

    def queryset(self, request, queryset):
        return queryset.filter(currency=self.value()) if self.value() else queryset


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = ("stripe_payout_id", "amount_shown", "status", "reconciliation", "stripe_created", "lines_csv")
    list_filter = ("reconciliation", "status", LedgerCurrencyFilter)
    search_fields = ("stripe_payout_id",)

    def get_search_results(self, request, queryset, search_term):
        return search_by_identifiers(queryset, search_term, text_fields=["stripe_payout_id"]), False

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("report/", wrap(FinanceView.as_view(admin_site=self.admin_site)), name="ledger_finance_report"),
            path("report/journal.csv", wrap(JournalCsvView.as_view()), name="ledger_journal_csv"),
            path("<int:object_id>/lines.csv", wrap(PayoutLinesCsvView.as_view()), name="ledger_payout_lines_csv"),
            *super().get_urls(),
        ]

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, obj):
        return format_amount(obj.amount, obj.currency)

    @admin.display(description="lines")
    def lines_csv(self, obj):
        return format_html('<a href="{}">CSV</a>', reverse("admin:ledger_payout_lines_csv", args=[obj.pk]))


@admin.register(BalanceTransaction)
class BalanceTransactionAdmin(ReadOnlyAdmin):
    list_display = (
        "stripe_id",
        "reporting_category",
        "amount",
        "fee",
        "net",
        "currency",
        "source_id",
        "stripe_created",
    )
    list_filter = (CategoryFilter, LedgerCurrencyFilter)
    search_fields = ("stripe_id",)
    raw_id_fields = ("payout", "payment", "refund", "dispute")

    def get_search_results(self, request, queryset, search_term):
        """A `txn_`, its source's id (`ch_`, `re_`, `dp_`, `po_`) or a PaymentIntent's, exactly (indexed)."""
        fields = ["stripe_id", "source_id", "payment_intent_id"]
        return search_by_identifiers(queryset, search_term, text_fields=fields), False


class PostingInline(admin.TabularInline):
    model = Posting
    fields = ("account", "currency", "amount")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "occurred_on", "description")
    raw_id_fields = ("balance_transaction",)
    inlines = [PostingInline]


@admin.register(UnmatchedItem)
class UnmatchedItemAdmin(ReadOnlyAdmin):
    list_display = ("payout", "balance_transaction", "reason", "created_at")
    raw_id_fields = ("payout", "balance_transaction")
