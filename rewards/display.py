"""Showing amounts of wei as OMNIT to people, exactly (integer arithmetic, never a float)."""

DECIMALS = 18
UNIT = 10**DECIMALS


def omnit(wei: int, places: int = 4) -> str:
    """`wei` as OMNIT with `places` decimals, rounded down: 1234500000000000000 → "1.2345"."""
    wei = int(wei)
    sign = "-" if wei < 0 else ""
    whole, fraction = divmod(abs(wei), UNIT)
    digits = str(fraction).rjust(DECIMALS, "0")[:places]
    grouped = f"{whole:,}"
    return f"{sign}{grouped}.{digits}" if places else f"{sign}{grouped}"
