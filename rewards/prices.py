"""Token prices for exports (README "Tax-ready exports"): the price at a moment, what an amount
of wei was worth, and the on-chain price feed that fills the price table.

The price at time T is the latest quote of PRICE_CURRENCY at or before T in the price table
(`TokenPrice`), if it is at most PRICE_MAX_AGE_S old; otherwise there is no price, and exports
leave the value empty with a note saying why (never a guess). Exports look prices up in the
database only: one query per slice of rows (`with_quote` annotates a queryset with the quote in
effect at one of its fields), never the chain.

A value is exact rational arithmetic, wei × price / 10^18, rounded once to cents, half to even
(banker's rounding); no float anywhere.

The feed (PRICE_FEED_ADDRESS, read through WEB3_PROVIDER_URI) is any contract with Chainlink's
AggregatorV3Interface quoting 1 OMNIT in PRICE_CURRENCY. `record_feed_quotes`, run by beat
(rewards.record_token_prices), reads its latest round and walks back through earlier rounds it
has not recorded yet (at most FEED_ROUNDS_PER_RUN a run), and stores each as a quote: price =
answer / 10^decimals exactly, at = the round's updatedAt.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import cached_property

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from eth_utils import to_checksum_address

from portal.lib.times import rfc3339
from rewards import chain
from rewards.models import Epoch, TokenPrice
from rewards.models.prices import parse_price, price_text
from rewards.wei import WEI_PER_OMNIT, decimal_string

log = logging.getLogger(__name__)

# Rounds one run reads at most (the first run on a feed records its last this many rounds).
FEED_ROUNDS_PER_RUN = 100
# Chainlink proxies number rounds phase << 64 | round of the phase's aggregator; walking back
# stops at the start of the latest round's phase.
PHASE_ROUND_MASK = 2**64 - 1


# --- the price at a moment ------------------------------------------------------------------


def with_quote(queryset, moment: str):
    """`queryset` annotated with the latest quote at or before its field `moment`, whatever its
    age: `quote_at` and `quote_price` (None without one). One correlated subquery per row, on
    the (currency, at) unique index."""
    latest = TokenPrice.objects.filter(
        currency=settings.PRICE_CURRENCY, at__lte=OuterRef(moment)
    ).order_by("-at")
    return queryset.annotate(
        quote_at=Subquery(latest.values("at")[:1]),
        quote_price=Subquery(latest.values("price")[:1]),
    )


def fiat(wei: int, price: Fraction) -> str:
    """What `wei` OMNIT were worth at `price` a token: exact, rounded to cents half to even."""
    cents = round(Fraction(int(wei), WEI_PER_OMNIT) * price * 100)  # Fraction rounds half-even
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{sign}{whole}.{rest:02d}"


@dataclass(frozen=True)
class PriceAt:
    """The price in effect at `moment`: the latest quote at or before it, if recent enough."""

    moment: datetime
    quoted_at: datetime | None  # the latest quote at or before `moment`, of any age
    quote: str | None
    currency: str
    max_age_s: int
    exact: Fraction | None  # the quote, when it is the price in effect at `moment`

    @classmethod
    def of(cls, moment: datetime, quoted_at: datetime | None, quote: str | None) -> "PriceAt":
        max_age_s = settings.PRICE_MAX_AGE_S
        exact = None
        if quoted_at is not None and moment - quoted_at <= timedelta(seconds=max_age_s):
            try:
                exact = Fraction(parse_price(quote))
            except ValidationError:  # a row written around the model's checks: no price
                exact = None
        return cls(moment, quoted_at, quote, settings.PRICE_CURRENCY, max_age_s, exact)

    @property
    def known(self) -> bool:
        return self.exact is not None

    @cached_property
    def price(self) -> str:
        """The quote, exact decimal text as stored, or "" without a price."""
        return price_text(parse_price(self.quote)) if self.known else ""

    @cached_property
    def at(self) -> str:
        return rfc3339(self.quoted_at) if self.known else ""

    def value(self, wei: int) -> str:
        """`wei` in the currency at this price (cents, half-even), or "" without a price."""
        return fiat(wei, self.exact) if self.known else ""

    @cached_property
    def note(self) -> str:
        """Why there is no price ("" when there is one)."""
        if self.known:
            return ""
        moment = rfc3339(self.moment)
        if self.quoted_at is None:
            return f"no {self.currency} price: none recorded at or before {moment}"
        if self.moment - self.quoted_at <= timedelta(seconds=self.max_age_s):
            return f"no {self.currency} price: the quote of {rfc3339(self.quoted_at)} is unreadable"
        return (
            f"no {self.currency} price: the latest before {moment} is from "
            f"{rfc3339(self.quoted_at)}, older than PRICE_MAX_AGE_S ({self.max_age_s} s)"
        )


def epoch_prices(epoch_ids) -> dict[int, PriceAt]:
    """The price in effect when each epoch closed (its end), by epoch id: one query."""
    rows = with_quote(Epoch.objects.filter(pk__in=list(epoch_ids)).order_by(), "end")
    return {
        pk: PriceAt.of(end, quoted_at, quote)
        for pk, end, quoted_at, quote in rows.values_list("pk", "end", "quote_at", "quote_price")
    }


# --- the on-chain feed ------------------------------------------------------------------------


@dataclass
class FeedResult:
    read: int = 0  # rounds read from the feed
    recorded: int = 0  # new quotes stored
    skipped: int = 0  # rounds without a usable answer (incomplete, not positive, carried over)


def feed_contract(w3):
    return w3.eth.contract(
        address=to_checksum_address(settings.PRICE_FEED_ADDRESS),
        abi=chain.abi("AggregatorV3Interface"),
    )


def _round_ids(latest: int) -> list[int]:
    """Round ids from `latest` back, newest first, within its phase and this run's bound."""
    first_of_phase = (latest & ~PHASE_ROUND_MASK) + 1
    return list(range(latest, max(first_of_phase, latest - FEED_ROUNDS_PER_RUN + 1) - 1, -1))


def _quote(address: str, decimals: int, data) -> TokenPrice | None:
    """A round as a quote (not saved), or None when it has no usable answer."""
    round_id, answer, _started, updated_at, answered_in = (int(v) for v in data)
    if answer <= 0 or updated_at <= 0 or answered_in < round_id:
        return None
    try:
        price = price_text(parse_price(decimal_string(Fraction(answer, 10**decimals))))
        at = datetime.fromtimestamp(updated_at, UTC)
    except (ValidationError, ValueError, OverflowError, OSError):
        return None
    return TokenPrice(
        currency=settings.PRICE_CURRENCY,
        at=at,
        price=price,
        source=TokenPrice.Source.FEED,
        feed=address,
        round_id=str(round_id),
    )


def record_feed_quotes(w3=None) -> FeedResult | None:
    """Store the feed's rounds not recorded yet; None when no feed (or no node) is configured.

    Safe to run twice or at once: quotes are unique per currency and moment, and an admin's
    quote at the very same second wins over the feed's.
    """
    if not settings.PRICE_FEED_ADDRESS:
        return None
    w3 = w3 or chain.web3()
    if w3 is None:
        return None
    from web3.exceptions import BadFunctionCallOutput, ContractCustomError, ContractLogicError

    feed = feed_contract(w3)
    address = feed.address
    decimals = int(feed.functions.decimals().call())
    latest = feed.functions.latestRoundData().call()
    ids = _round_ids(int(latest[0]))
    known = set(
        TokenPrice.objects.filter(feed=address, round_id__in=[str(i) for i in ids]).values_list(
            "round_id", flat=True
        )
    )
    result = FeedResult()
    quotes: list[TokenPrice] = []
    for round_id in ids:
        if str(round_id) in known:
            break  # recorded by an earlier run, and so were the rounds before it
        if round_id == ids[0]:
            data = latest
        else:
            try:
                data = feed.functions.getRoundData(round_id).call()
            except (ContractLogicError, ContractCustomError, BadFunctionCallOutput, ValueError):
                break  # no such round: the feed's history starts after it
        result.read += 1
        quote = _quote(address, decimals, data)
        if quote is None:
            result.skipped += 1
            log.info("price feed %s: round %s has no usable answer", address, round_id)
            continue
        quotes.append(quote)
    # One quote per moment: the newest round of a second, and never over an existing quote.
    taken = set(
        TokenPrice.objects.filter(
            currency=settings.PRICE_CURRENCY, at__in=[q.at for q in quotes]
        ).values_list("at", flat=True)
    )
    fresh = []
    for quote in quotes:
        if quote.at not in taken:
            taken.add(quote.at)
            fresh.append(quote)
    TokenPrice.objects.bulk_create(fresh, ignore_conflicts=True)
    result.recorded = len(fresh)
    return result
