from django import template

from rewards.display import omnit as format_omnit

register = template.Library()


@register.filter
def omnit(wei, places: int = 4) -> str:
    """{{ amount_wei|omnit }} → "1,234.5678" (OMNIT, rounded down, exact)."""
    return format_omnit(int(wei), int(places))
