from django.apps import AppConfig


class ContributorsConfig(AppConfig):
    name = "contributors"
    verbose_name = "Contributors and machines"
