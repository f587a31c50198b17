"""Token amounts stay exact integers of wei on every backend, values beyond 2^63 included."""

from decimal import Decimal
from fractions import Fraction

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.test.utils import isolate_apps

from rewards.wei import WeiField, decimal_string, omnit, parse_wei, sum_wei

BIG = 2**63 + 12345  # beyond a signed 64-bit integer
HUGE = 2**256 - 1  # the largest uint256


@pytest.fixture
def table():
    """A throwaway model with a DecimalField and a WeiField, created in the test database."""
    with isolate_apps("rewards"):

        class Amounts(models.Model):  # noqa: DJ008 - a throwaway table
            decimal = models.DecimalField(max_digits=78, decimal_places=0, null=True)
            wei = WeiField(null=True)

            class Meta:
                app_label = "rewards"
                db_table = "test_rewards_amounts"

        with connection.schema_editor() as editor:
            editor.create_model(Amounts)
        try:
            yield Amounts
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(Amounts)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL's NUMERIC is exact")
def test_decimal_field_on_sqlite_loses_wei_beyond_2_63(table):
    row = table.objects.create(decimal=Decimal(BIG))
    row.refresh_from_db()
    # Stored as an 8-byte REAL and read back through 15 significant digits: thousands of wei
    # gone (9223372036854788153 comes back as 9223372036854790000).
    assert row.decimal != BIG
    assert row.decimal == Decimal("9223372036854790000")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("amount", [0, 1, 2**63 - 1, BIG, 10**18 * 1000, HUGE, -BIG])
def test_wei_field_keeps_every_digit(table, amount):
    row = table.objects.create(wei=amount)
    row.refresh_from_db()
    assert row.wei == amount
    assert type(row.wei) is int
    assert table.objects.get(wei=amount).pk == row.pk


@pytest.mark.django_db(transaction=True)
def test_sums_of_wei_are_exact(table):
    table.objects.bulk_create([table(wei=BIG), table(wei=BIG), table(wei=1)])
    assert sum_wei(table.objects.all(), "wei") == 2 * BIG + 1
    assert sum_wei(table.objects.none(), "wei") == 0


def test_floats_are_never_wei():
    with pytest.raises(ValidationError):
        parse_wei(1e18)
    with pytest.raises(ValidationError):
        parse_wei("1.5")
    assert parse_wei("1000000000000000000000") == 10**21
    assert parse_wei(Decimal("12E+2")) == 1200


def test_amounts_shown_in_omnit_keep_all_decimals():
    assert omnit(1_500_000_000_000_000_000) == "1.5"
    assert omnit(1) == "0.000000000000000001"
    assert decimal_string(Fraction(18120375, 64)) == "283130.859375"
