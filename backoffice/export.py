"""
The CSV export of the filtered payments list (`/admin/payments/payment/export/`),
streamed from a server-side cursor.
"""

import csv

from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views import View

from payments.currencies import format_amount

# --- CSV export -----------------------------------------------------------------

EXPORT_COLUMNS = (
    ("id", "id"),
    ("created_at", "created_at"),
    ("stripe_payment_intent_id", "stripe_payment_intent_id"),
    ("customer_email", "user__email"),
    ("status", "status"),
    ("currency", "currency"),
    ("amount", "amount"),
    ("refunded_amount", "refunded_amount"),
    ("idempotency_key", "idempotency_key"),
    ("description", "description"),
    # Added after the columns above, so readers of the earlier columns by position still work.
    ("amount_received", "amount_received"),
    ("capture_method", "capture_method"),
    ("order_reference", "order_reference"),
    ("shopper_email", "customer_email"),
    ("shopper_name", "customer_name"),
    ("card_last4", "card_last4"),
)


class Echo:
    """A file-like object csv.writer can write to that just hands each line back."""

    def write(self, value: str) -> str:
        return value


def spreadsheet_safe(value):
    # A cell starting with = + - @ is a formula to Excel and LibreOffice: a
    # customer's description must not run as one on a colleague's machine.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class PaymentExportView(View):
    """
    The payments list as CSV, with the same filters and search as the list
    page (its query string is passed along), streamed from a server-side
    cursor: a million rows never sit in memory. Amounts are in minor units,
    with the display amount beside them.
    """

    model_admin = None

    def get(self, request):
        if not self.model_admin.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.model_admin.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:payments_payment_changelist"))
        rows = changelist.queryset.values_list(*(lookup for _, lookup in EXPORT_COLUMNS)).iterator(chunk_size=2000)
        writer = csv.writer(Echo())

        def lines():
            yield writer.writerow([name for name, _ in EXPORT_COLUMNS] + ["amount_display"])
            for row in rows:
                amount, currency = row[6], row[5]
                yield writer.writerow([spreadsheet_safe(value) for value in row] + [format_amount(amount, currency)])

        filename = f"payments-{timezone.now():%Y%m%d-%H%M%S}.csv"
        return StreamingHttpResponse(
            lines(),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
