"""
The support desk's admin registrations, one module per area; Django's autodiscovery
imports this module, which imports them.
"""

from backoffice import (  # noqa: F401
    admin_ledger,  # noqa: F401
    admin_notifications,
    admin_payments,
    admin_refunds,
    admin_webhooks,
)
