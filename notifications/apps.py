from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications to the storefront"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The outbox: every saved change of a payment, refund or dispute that a
        # storefront cares about writes its event in the same transaction.
        from notifications import outbox

        outbox.connect()
