from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BackofficeConfig(AppConfig):
    name = "backoffice"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from backoffice.roles import desk_groups_after_migrate

        post_migrate.connect(desk_groups_after_migrate, dispatch_uid="backoffice.desk_groups")
