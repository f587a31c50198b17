"""Exact token amounts: integers of wei, on every database backend, with no float anywhere.

Django's `DecimalField` is exact on PostgreSQL but not on SQLite, where a value beyond 2^63
is stored as an 8-byte REAL and comes back rounded (tests/test_rewards_wei.py shows it). So
`WeiField` keeps wei as `NUMERIC(78, 0)` on PostgreSQL (78 digits hold any uint256) and as a
decimal string in a TEXT column elsewhere, and is always a Python `int` in code.

On SQLite the column is text: never let the database sum, compare or order amounts there.
Sum them in Python with `sum_wei` (on PostgreSQL it sums in NUMERIC, exactly).
"""

from decimal import Decimal
from fractions import Fraction

from django import forms
from django.core.exceptions import ValidationError
from django.db import connection, models

WEI_PER_OMNIT = 10**18
MAX_DIGITS = 78


def parse_wei(value) -> int | None:
    """An int from an int, an integral Decimal or a string of digits; floats are refused."""
    if value is None or value == "":
        return None
    if isinstance(value, bool | float):
        raise ValidationError(f"{value!r} is not an exact amount of wei.")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValidationError(f"{value} is not a whole number of wei.")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not digits.isdigit() or not digits.isascii():
            raise ValidationError(f"{value!r} is not a whole number of wei.")
        return int(text)
    raise ValidationError(f"{value!r} is not an amount of wei.")


class WeiFormField(forms.CharField):
    """Wei typed as digits; the admin shows and takes the exact integer."""

    def to_python(self, value):
        value = super().to_python(value)
        return parse_wei(value)

    def prepare_value(self, value):
        return "" if value is None else str(value)


class WeiField(models.Field):
    """An exact integer of wei: NUMERIC(78,0) on PostgreSQL, a decimal string elsewhere."""

    description = "An exact integer amount of wei (up to 78 digits)"

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return f"numeric({MAX_DIGITS}, 0)"
        return "text"

    def from_db_value(self, value, expression, connection):
        return None if value is None else int(value)

    def to_python(self, value):
        return parse_wei(value)

    def get_prep_value(self, value):
        return parse_wei(super().get_prep_value(value))

    def get_db_prep_value(self, value, connection, prepared=False):
        if not prepared:
            value = self.get_prep_value(value)
        if value is None:
            return None
        if len(str(abs(value))) > MAX_DIGITS:
            raise ValidationError(f"{value} has more than {MAX_DIGITS} digits.")
        return Decimal(value) if connection.vendor == "postgresql" else str(value)

    def value_to_string(self, obj) -> str:
        value = self.value_from_object(obj)
        return "" if value is None else str(value)

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": WeiFormField, **kwargs})


def sum_wei(queryset, field: str) -> int:
    """Σ of a WeiField over a queryset, exactly: NUMERIC on PostgreSQL, Python ints elsewhere."""
    if connection.vendor == "postgresql":
        return queryset.aggregate(total=models.Sum(field))["total"] or 0
    return sum(queryset.values_list(field, flat=True), 0)


def decimal_string(value: Fraction) -> str:
    """A rational with a terminating decimal expansion, written exactly (no rounding, ever)."""
    if type(value) is not Fraction:
        value = Fraction(value)
    numerator, denominator = value.numerator, value.denominator
    sign = "-" if numerator < 0 else ""
    numerator = abs(numerator)
    if denominator == 1:
        return f"{sign}{numerator}"
    # Terminating means a denominator of 2^a * 5^b: scaled by 10^max(a, b) it divides evenly.
    twos = (denominator & -denominator).bit_length() - 1
    rest, fives = denominator >> twos, 0
    while rest % 5 == 0:
        rest //= 5
        fives += 1
    if rest != 1:
        raise ValueError(f"{value} has no terminating decimal expansion")
    places = max(twos, fives)
    digits = str(numerator * 10**places // denominator).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:].rstrip('0')}"


def rounded_decimal(value: Fraction, places: int = 18) -> str:
    """A rational shown with `places` decimals (rounded half up): for shares, never for money."""
    value = Fraction(value)
    return rounded_ratio(value.numerator, value.denominator, places)


def rounded_ratio(numerator: int, denominator: int, places: int = 18) -> str:
    """`rounded_decimal` of numerator / denominator (denominator > 0), in integers alone."""
    # Half up: floor(|value| * 10^places + 1/2), the sign put back.
    whole = (2 * abs(numerator) * 10**places + denominator) // (2 * denominator)
    sign = "-" if numerator < 0 and whole else ""
    digits = str(whole).rjust(places + 1, "0")
    decimals = digits[len(digits) - places :].rstrip("0") if places else ""
    return f"{sign}{digits[: len(digits) - places]}" + (f".{decimals}" if decimals else "")


def omnit(wei: int) -> str:
    """Wei shown as OMNIT with all 18 decimals kept, e.g. 1500000000000000000 → '1.5'."""
    return decimal_string(Fraction(wei, WEI_PER_OMNIT))
