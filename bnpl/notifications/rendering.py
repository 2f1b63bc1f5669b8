"""Rendering a notification's texts from ``templates/notifications/<key>.txt``, strictly, in a given language.

Each template defines three partials (Django 6's ``{% partialdef %}``): ``subject``, ``body`` and ``sms``.
They are rendered by an engine of our own with autoescaping off (the texts are plain text; pages that show
them escape them) and with an "invalid variable" marker that raises: a template that uses a name the data
does not carry fails loudly, in tests and in production alike, instead of sending a message with a hole.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from django.conf import settings
from django.template import Context, Engine, TemplateDoesNotExist
from django.utils import translation

from .kinds import kind_spec

PARTS = ("subject", "body", "sms")


class NotificationTemplateError(ValueError):
    """A template or its data is wrong (missing data, an unknown variable, a missing partial)."""


class _RaisingInvalid(str):
    """``string_if_invalid`` that raises on use (Django formats it with the variable's name)."""

    def __mod__(self, name: object) -> str:
        raise NotificationTemplateError(f"notification template uses an unknown variable {name!r}")


@cache
def engine() -> Engine:
    return Engine(
        dirs=[str(path) for path in settings.TEMPLATES[0]["DIRS"]],
        app_dirs=False,
        autoescape=False,
        string_if_invalid=_RaisingInvalid("%s"),
        libraries={"portal_format": "bnpl.templatetags.portal_format"},
        builtins=["django.templatetags.i18n"],
    )


def render(key: str, data: Mapping[str, Any], language: str) -> dict[str, str]:
    """Subject, body and SMS text of ``key`` with ``data`` in ``language``; raises on any gap."""
    spec = kind_spec(key)
    missing = sorted(spec.required - set(data))
    if missing:
        raise NotificationTemplateError(f"notification {key!r} is missing data: {', '.join(missing)}")
    texts: dict[str, str] = {}
    with translation.override(language):
        for part in PARTS:
            try:
                template = engine().get_template(f"notifications/{key}.txt#{part}")
            except TemplateDoesNotExist as exc:
                raise NotificationTemplateError(f"notification template {key!r} has no partial {part!r}") from exc
            text = template.render(Context(dict(data)))
            texts[part] = _tidy(text) if part == "body" else " ".join(text.split())
    if not texts["subject"]:
        raise NotificationTemplateError(f"notification {key!r} rendered an empty subject")
    return texts


def _tidy(text: str) -> str:
    """Trim each line and collapse runs of blank lines left by template tags."""
    lines = [line.strip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def render_all(key: str, data: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The texts of ``key`` in every configured language."""
    return {code: render(key, data, code) for code, _name in settings.LANGUAGES}
