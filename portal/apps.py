from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "OmniTensor portal"

    def ready(self) -> None:
        from django.db.models import Field, ForeignObject

        from portal.lib.db import AnyOf

        # Relations keep lookups of their own (they do not inherit Field's).
        Field.register_lookup(AnyOf)
        ForeignObject.register_lookup(AnyOf)
