from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BnplConfig(AppConfig):
    name = "bnpl"
    verbose_name = _("Credit order")

    def ready(self) -> None:
        from . import log_redaction

        log_redaction.connect()
