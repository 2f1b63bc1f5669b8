"""Template filters of the rewards pages (守约激励)."""

from __future__ import annotations

from django import template

from consumers.choices import RewardLevel

register = template.Library()


@register.filter
def reward_level(level: str) -> str:
    """A rewards level's name (守约新星 … 守约之星) in the active language."""
    try:
        return str(RewardLevel(level).label)
    except ValueError:
        return ""
