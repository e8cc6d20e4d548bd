"""
The support desk's admin registrations, one module per area; Django's autodiscovery
imports this module, which imports them.
"""

from backoffice import admin_notifications, admin_payments, admin_refunds, admin_webhooks  # noqa: F401
