from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    verbose_name = "The books"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Stripe's money movements reach the books through jobs queued after each
        # applied event (core.signals) and each refund Stripe confirms.
        from ledger import receivers

        receivers.connect()
