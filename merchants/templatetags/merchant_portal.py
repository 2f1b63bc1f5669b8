"""Template helpers of the merchant portal: ``{% if request.member|can:"refund" %}`` hides what a role may not do."""

from django import template

from ..models import MerchantMember
from ..portal.access import Capability, member_can, memberships_for

register = template.Library()


@register.filter
def can(member: MerchantMember | None, capability: str) -> bool:
    """Whether ``member`` holds ``capability`` (a :class:`Capability` value); False without a member."""
    return member is not None and member_can(member, Capability(capability))


@register.simple_tag(takes_context=True)
def portal_memberships(context: template.Context) -> list[MerchantMember]:
    """The signed-in user's memberships, for the merchant switcher."""
    return memberships_for(context["request"].user)
