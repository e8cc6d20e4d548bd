"""
The support desk's admin registrations, one module per area; Django's autodiscovery
imports this module, which imports them.
"""

from django.contrib import admin

from backoffice import (  # noqa: F401
    admin_ledger,
    admin_notifications,
    admin_payments,
    admin_refunds,
    admin_webhooks,
)

admin.site.site_header = "paymentsite back-office"
admin.site.site_title = "paymentsite back-office"
admin.site.index_title = "Support desk"
# The desk's lists need the width: the app list is on the index page and in the breadcrumbs.
admin.site.enable_nav_sidebar = False
