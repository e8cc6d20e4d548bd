from django.apps import AppConfig


class DevkitConfig(AppConfig):
    name = "devkit"
    default_auto_field = "django.db.models.BigAutoField"
