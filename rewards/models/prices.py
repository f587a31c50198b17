"""Token prices: what one OMNIT was worth in a fiat currency, and when (README "Tax-ready
exports"). Admins keep quotes by hand in /admin/; when a price feed is configured, a beat task
records its rounds here too (rewards.prices), so exports read this table and never the chain.

A price is an exact decimal written as text (never a float, never a rounded NUMERIC on
SQLite): "0.0421", "1234.5". In code it is a `Decimal`, exact as parsed.
"""

import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

# Plain decimal notation only: no exponent, no sign, no grouping. 30 digits before the point
# and 36 after are far beyond any price (a Chainlink feed has at most 18 decimals; an 18-decimal
# feed of a tiny price still fits).
PRICE_PATTERN = re.compile(r"(\d{1,30})(?:\.(\d{1,36}))?")
CURRENCY_PATTERN = re.compile(r"[A-Z][A-Z0-9]{1,9}")


def parse_price(value) -> Decimal:
    """An exact, positive price from a Decimal or its plain decimal text; floats are refused."""
    if isinstance(value, bool | float):
        raise ValidationError(f"{value!r} is not an exact price: write it as decimal text.")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValidationError(f"{value} is not a price.")
        value = format(value, "f")
    if not isinstance(value, str):
        raise ValidationError(f"{value!r} is not a price.")
    text = value.strip()
    if not text.isascii() or PRICE_PATTERN.fullmatch(text) is None:
        raise ValidationError(
            f"{value!r} is not a price: plain decimal digits, e.g. 0.0421 (at most 30 digits "
            "before the point and 36 after)."
        )
    try:
        price = Decimal(text)
    except InvalidOperation:  # pragma: no cover: the pattern admits only valid decimals
        raise ValidationError(f"{value!r} is not a price.") from None
    if price <= 0:
        raise ValidationError("A price must be more than 0.")
    return price


def price_text(price: Decimal) -> str:
    """The stored form of a price: plain notation, no trailing zeros after the point."""
    text = format(price, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def validate_currency(value: str) -> None:
    if not isinstance(value, str) or CURRENCY_PATTERN.fullmatch(value) is None:
        raise ValidationError(f"{value!r} is not a currency code (e.g. USD, EUR).")


class TokenPrice(models.Model):
    """One quote: 1 OMNIT was worth `price` units of `currency` at `at`.

    "The price at time T" is the latest quote of the currency at or before T, if it is at most
    PRICE_MAX_AGE_S old (rewards.prices); one quote per currency and moment.
    """

    class Source(models.TextChoices):
        ADMIN = "admin", "entered by an admin"
        FEED = "feed", "read from the on-chain price feed"

    currency = models.CharField(
        max_length=10,
        validators=[validate_currency],
        help_text="Code of the currency the price is in, e.g. USD (PRICE_CURRENCY is used).",
    )
    at = models.DateTimeField(help_text="When 1 OMNIT was worth this (UTC).")
    price = models.CharField(
        max_length=80,
        help_text="Price of 1 OMNIT in the currency, as exact decimal text, e.g. 0.0421.",
    )
    source = models.CharField(max_length=5, choices=Source.choices, default=Source.ADMIN)
    feed = models.CharField(
        max_length=42, blank=True, help_text="The feed's address, for quotes read from it."
    )
    round_id = models.CharField(
        max_length=30, blank=True, help_text="The feed's round id, for quotes read from it."
    )
    notes = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "token price"
        ordering = ["currency", "-at"]
        constraints = [
            models.UniqueConstraint(fields=["currency", "at"], name="tokenprice_one_per_moment"),
        ]
        indexes = [models.Index(fields=["feed", "round_id"], name="tokenprice_feed_round")]

    def __str__(self) -> str:
        return f"1 OMNIT = {self.price} {self.currency} at {self.at.isoformat()}"

    def save(self, *args, **kwargs) -> None:
        # Whoever writes a quote (admin, feed task, a shell), it is stored exact and canonical.
        self.price = price_text(parse_price(self.price))
        validate_currency(self.currency)
        super().save(*args, **kwargs)

    @property
    def value(self) -> Decimal:
        return parse_price(self.price)

    def clean(self) -> None:
        errors = {}
        if isinstance(self.currency, str):
            self.currency = self.currency.strip().upper()
        try:
            self.price = price_text(parse_price(self.price))
        except ValidationError as exc:
            errors["price"] = exc.messages
        if errors:
            raise ValidationError(errors)
