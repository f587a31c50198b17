#!/usr/bin/env python3
"""Recompute an OmniTensor epoch manifest to the wei, with nothing but the standard library.

    python rewards/verify_epoch.py manifest.json
    python rewards/verify_epoch.py https://portal.example/api/v1/epochs/42/manifest.json
    python rewards/verify_epoch.py manifest.json --sha256 <the digest on your statement>

Prints `OK ...` and exits 0 when every figure follows from the manifest's inputs; otherwise
prints the first difference (`DIFFERENCE: gpu <pseudonym>: <field>: expected <recomputed>,
found <in the manifest>`) and exits 1. The manifest's SHA-256 is that of its canonical JSON
(keys sorted, separators `,` and `:`, ASCII), which is also the published file byte for byte.

Manifest format `omnitensor-epoch-manifest/1` (GET /api/v1/epochs/<id>/manifest.json). Every
amount of wei is a string of digits; every other quantity is an exact decimal string (no
exponent, nothing rounded) unless said otherwise:

- `format`: "omnitensor-epoch-manifest/1".
- `epoch`: `id`, `start`, `end` (RFC 3339, UTC), `seconds` (its length), `settled_at`.
- `policy`: `id` (null: the default policy of the portal's settings), `grace_s`, `max_gap_s`,
  `compute_pool_wei`, `idle_pool_wei`, `mib_per_gib` (1024), `formulas` (the rules below, in
  words).
- `pools`: `compute` and `idle`, each `total_units` (Σ units of its GPUs), `paid_wei`,
  `unallocated_wei` (the pool when nobody earned from it, else 0).
- `totals`: `gpus` (listed), `paid_gpus` (with an entry), `held_out_gpus`, `paid_wei`.
- `gpus`: one object per physical GPU that earned an entry or was held out, in ascending order
  of its uuid (the order settlement breaks ties in), each with
  - `gpu`: its pseudonym (an HMAC of its uuid; its owner sees it on their statement);
  - `held_out`: null, or why it earned nothing (`disabled`, `flagged`, `unverified`,
    `verification_failed`, `probe_failed`); then `compute` and `idle` are null;
  - `covered_seconds`: time its samples covered (MIG instances included; null for epochs
    settled before entries recorded it);
  - `compute`: null when it was never busy, else `busy_seconds`, `null_utilization_seconds`
    (busy time without a utilization reading, counted as 0 %), `utilization_pct_seconds`
    (Σ busy seconds × utilization %), `avg_utilization_pct` (their ratio, rounded half up to
    6 decimals), `weight` (its model's rating), `units`, `amount_wei`;
  - `idle`: null when it was never idle, else `idle_seconds`, `committed_mib` (an integer),
    `mib_seconds` (Σ idle seconds × MiB of committed memory left free), `avg_available_mib`
    (`mib_seconds / idle_seconds`, rounded half up to 6 decimals), `units` (GiB·s),
    `amount_wei`;
  - `amount_wei`: compute plus idle.

What is recomputed (DESIGN.md "Reward definitions"):

- compute units = utilization_pct_seconds / 100 × weight; idle units = mib_seconds / mib_per_gib;
  the averages from their sums; bounds: null_utilization_seconds ≤ busy_seconds,
  utilization_pct_seconds ≤ 100 × (busy − null) seconds, mib_seconds ≤ idle_seconds ×
  committed_mib, busy + idle ≤ covered seconds;
- each pool's total units = Σ of its GPUs' units; the counts of GPUs;
- each pool's wei: every GPU of the pool gets floor(pool × units / total units), and the wei
  left over go one each by largest remainder, ties in the order of `gpus`; a pool without
  units pays nothing and stays unallocated;
- each GPU's amount_wei, each pool's paid and unallocated wei, the total paid.

Inputs that come from telemetry (the seconds and sums) cannot be recomputed from the manifest;
they are checked for consistency with everything derived from them.
"""

import argparse
import hashlib
import json
import re
import sys
import urllib.request
from fractions import Fraction

FORMAT = "omnitensor-epoch-manifest/1"
AVERAGE_PLACES = 6
DECIMAL = re.compile(r"-?[0-9]{1,80}(\.[0-9]{1,400})?")
WEI = re.compile(r"[0-9]{1,80}")
TOTALS = "(totals)"


class Difference(Exception):
    """The first figure that does not follow from the manifest's inputs."""

    def __init__(self, where: str, field: str, expected, found):
        super().__init__(f"{where}: {field}: expected {show(expected)}, found {show(found)}")


def show(value) -> str:
    if isinstance(value, Fraction):
        return exact_decimal(value) or f"{value.numerator}/{value.denominator}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def exact_decimal(value: Fraction) -> str | None:
    """The value's finite decimal expansion, or None when it has none."""
    sign, value = ("-" if value < 0 else ""), abs(value)
    whole, rest = divmod(value.numerator, value.denominator)
    digits = ""
    for _ in range(400):
        if rest == 0:
            return f"{sign}{whole}" + (f".{digits}" if digits else "")
        digit, rest = divmod(rest * 10, value.denominator)
        digits += str(digit)
    return None


def rounded(value: Fraction, places: int = AVERAGE_PLACES) -> Fraction:
    """Rounded half up to `places` decimals, as the portal shows averages."""
    scaled = value * 10**places
    whole = int(scaled + Fraction(1, 2)) if scaled >= 0 else -int(-scaled + Fraction(1, 2))
    return Fraction(whole, 10**places)


# --- reading the manifest's values ------------------------------------------------------------


def field(obj, key: str, where: str, path: str = ""):
    name = f"{path}{key}"
    if not isinstance(obj, dict) or key not in obj:
        raise Difference(where, name, "a value", "nothing")
    return obj[key]


def decimal(obj, key: str, where: str, path: str = "") -> Fraction:
    value = field(obj, key, where, path)
    if not isinstance(value, str) or not DECIMAL.fullmatch(value):
        raise Difference(where, f"{path}{key}", "an exact decimal string", value)
    return Fraction(value)


def optional_decimal(obj, key: str, where: str, path: str = "") -> Fraction | None:
    return None if field(obj, key, where, path) is None else decimal(obj, key, where, path)


def wei(obj, key: str, where: str, path: str = "") -> int:
    value = field(obj, key, where, path)
    if not isinstance(value, str) or not WEI.fullmatch(value):
        raise Difference(where, f"{path}{key}", "a string of digits (wei)", value)
    return int(value)


def integer(obj, key: str, where: str, path: str = "") -> int:
    value = field(obj, key, where, path)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Difference(where, f"{path}{key}", "a whole number", value)
    return value


def same(where: str, name: str, expected, found) -> None:
    if expected != found:
        raise Difference(where, name, expected, found)


# --- the rules --------------------------------------------------------------------------------


def split_pool(pool_wei: int, units: dict[int, Fraction]) -> dict[int, int]:
    """floor(pool × units / Σunits) each, then one leftover wei each by largest remainder, ties
    by key (the GPU's position in the manifest) ascending; nothing at all without units."""
    total = sum(units.values(), Fraction(0))
    if total == 0 or pool_wei == 0:
        return dict.fromkeys(units, 0)
    amounts, remainders = {}, {}
    for key, share in units.items():
        exact = pool_wei * share / total
        amounts[key] = exact.numerator // exact.denominator
        remainders[key] = exact - amounts[key]
    leftover = pool_wei - sum(amounts.values())
    for key in sorted(units, key=lambda k: (-remainders[k], k))[:leftover]:
        amounts[key] += 1
    return amounts


def check_compute(part: dict, where: str) -> Fraction:
    """The compute units, after checking that everything in `part` agrees with its inputs."""
    p = "compute."
    busy = decimal(part, "busy_seconds", where, p)
    null = decimal(part, "null_utilization_seconds", where, p)
    total = decimal(part, "utilization_pct_seconds", where, p)
    weight = decimal(part, "weight", where, p)
    if busy <= 0:
        raise Difference(where, p + "busy_seconds", "more than 0", busy)
    if not 0 <= null <= busy:
        raise Difference(where, p + "null_utilization_seconds", f"0 to {show(busy)}", null)
    if not 0 <= total <= 100 * (busy - null):
        limit = show(100 * (busy - null))
        raise Difference(where, p + "utilization_pct_seconds", f"0 to {limit}", total)
    if weight < 0:
        raise Difference(where, p + "weight", "0 or more", weight)
    units = total / 100 * weight
    same(where, p + "units", units, decimal(part, "units", where, p))
    same(where, p + "avg_utilization_pct", rounded(total / busy),
         decimal(part, "avg_utilization_pct", where, p))  # fmt: skip
    return units


def check_idle(part: dict, where: str, mib_per_gib: int) -> Fraction:
    """The idle units (GiB·s), after checking that everything in `part` agrees."""
    p = "idle."
    idle = decimal(part, "idle_seconds", where, p)
    mib_seconds = decimal(part, "mib_seconds", where, p)
    if idle <= 0:
        raise Difference(where, p + "idle_seconds", "more than 0", idle)
    committed = field(part, "committed_mib", where, p)
    if committed is not None:
        committed = integer(part, "committed_mib", where, p)
    limit = None if committed is None else idle * committed
    if mib_seconds < 0 or (limit is not None and mib_seconds > limit):
        expected = "0 or more" if limit is None else f"0 to {show(limit)}"
        raise Difference(where, p + "mib_seconds", expected, mib_seconds)
    units = mib_seconds / mib_per_gib
    same(where, p + "units", units, decimal(part, "units", where, p))
    same(where, p + "avg_available_mib", rounded(mib_seconds / idle),
         decimal(part, "avg_available_mib", where, p))  # fmt: skip
    return units


def check_gpu(gpu: dict, where: str, mib_per_gib: int) -> tuple[Fraction | None, Fraction | None]:
    """(compute units, idle units) of one GPU, None where it has no such entry."""
    held = field(gpu, "held_out", where)
    compute, idle = field(gpu, "compute", where), field(gpu, "idle", where)
    covered = optional_decimal(gpu, "covered_seconds", where)
    if held is not None:
        if not isinstance(held, str) or not held:
            raise Difference(where, "held_out", "null or a reason", held)
        same(where, "compute", None, compute)
        same(where, "idle", None, idle)
        same(where, "amount_wei", 0, wei(gpu, "amount_wei", where))
        return None, None
    if compute is None and idle is None:
        raise Difference(where, "compute", "an entry (the GPU is listed as paid)", None)
    compute_units = None if compute is None else check_compute(compute, where)
    idle_units = None if idle is None else check_idle(idle, where, mib_per_gib)
    busy = Fraction(0) if compute is None else Fraction(compute["busy_seconds"])
    idle_s = Fraction(0) if idle is None else Fraction(idle["idle_seconds"])
    if covered is not None and busy + idle_s > covered:
        raise Difference(where, "covered_seconds", f"at least {show(busy + idle_s)}", covered)
    return compute_units, idle_units


def verify(manifest) -> str:
    """A one-line summary of a manifest that checks out; raises Difference at the first figure
    that does not."""
    same("(manifest)", "format", FORMAT, field(manifest, "format", "(manifest)"))
    policy = field(manifest, "policy", "(policy)")
    pools = {"compute": wei(policy, "compute_pool_wei", "(policy)"),
             "idle": wei(policy, "idle_pool_wei", "(policy)")}  # fmt: skip
    mib_per_gib = integer(policy, "mib_per_gib", "(policy)")
    if mib_per_gib == 0:
        raise Difference("(policy)", "mib_per_gib", "more than 0", 0)
    gpus = field(manifest, "gpus", TOTALS)
    if not isinstance(gpus, list):
        raise Difference(TOTALS, "gpus", "a list", type(gpus).__name__)

    # 1. Every GPU's units from its inputs, in the manifest's order.
    units: dict[str, dict[int, Fraction]] = {"compute": {}, "idle": {}}
    names, held = set(), 0
    for index, gpu in enumerate(gpus):
        name = gpu.get("gpu") if isinstance(gpu, dict) else None
        where = f"gpu {name}" if isinstance(name, str) and name else f"gpu #{index}"
        if not isinstance(name, str) or not name or name in names:
            raise Difference(where, "gpu", "a pseudonym listed once", name)
        names.add(name)
        compute_units, idle_units = check_gpu(gpu, where, mib_per_gib)
        held += gpu["held_out"] is not None
        if compute_units is not None:
            units["compute"][index] = compute_units
        if idle_units is not None:
            units["idle"][index] = idle_units

    # 2. The counts and each pool's total units.
    totals = field(manifest, "totals", TOTALS)
    same(TOTALS, "gpus", len(gpus), integer(totals, "gpus", TOTALS))
    same(TOTALS, "paid_gpus", len(gpus) - held, integer(totals, "paid_gpus", TOTALS))
    same(TOTALS, "held_out_gpus", held, integer(totals, "held_out_gpus", TOTALS))
    pool_results = field(manifest, "pools", TOTALS)
    for kind in ("compute", "idle"):
        pool = field(pool_results, kind, TOTALS, "pools.")
        stated = decimal(pool, "total_units", TOTALS, f"pools.{kind}.")
        same(TOTALS, f"pools.{kind}.total_units", sum(units[kind].values(), Fraction(0)), stated)

    # 3. Every wei, in the manifest's order.
    paid = {kind: split_pool(pools[kind], units[kind]) for kind in pools}
    for index, gpu in enumerate(gpus):
        where = f"gpu {gpu['gpu']}"
        amount = 0
        for kind in ("compute", "idle"):
            if index in paid[kind]:
                found = wei(gpu[kind], "amount_wei", where, f"{kind}.")
                same(where, f"{kind}.amount_wei", paid[kind][index], found)
                amount += found
        same(where, "amount_wei", amount, wei(gpu, "amount_wei", where))

    # 4. What each pool paid and left, and the total.
    for kind in ("compute", "idle"):
        result = pool_results[kind]
        total_paid = sum(paid[kind].values())
        same(TOTALS, f"pools.{kind}.paid_wei", total_paid,
             wei(result, "paid_wei", TOTALS, f"pools.{kind}."))  # fmt: skip
        same(TOTALS, f"pools.{kind}.unallocated_wei", pools[kind] - total_paid,
             wei(result, "unallocated_wei", TOTALS, f"pools.{kind}."))  # fmt: skip
    everything = sum(sum(p.values()) for p in paid.values())
    same(TOTALS, "paid_wei", everything, wei(totals, "paid_wei", TOTALS))

    epoch = manifest.get("epoch") or {}
    return (
        f"epoch {epoch.get('id')} [{epoch.get('start')}, {epoch.get('end')}): {len(gpus)} GPUs "
        f"({held} held out), {everything} wei paid of {pools['compute'] + pools['idle']}"
    )


# --- command line -----------------------------------------------------------------------------


def canonical_bytes(manifest) -> bytes:
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    if source.startswith(("https://", "http://")):
        # Only http(s) reaches here, never file: or another scheme urllib would open.
        request = urllib.request.Request(source, headers={"Accept": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return response.read()
    with open(source, "rb") as handle:
        return handle.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="a file, an http(s) URL, or - for standard input")
    parser.add_argument("--sha256", help="the digest the manifest must have (from a statement)")
    args = parser.parse_args(argv)
    try:
        raw = read(args.manifest)
        manifest = json.loads(raw)
    except (OSError, ValueError) as exc:
        print(f"ERROR: cannot read {args.manifest}: {exc}")
        return 1
    digest = hashlib.sha256(canonical_bytes(manifest)).hexdigest()
    if args.sha256 is not None and args.sha256.strip().lower() != digest:
        print(f"DIFFERENCE: (manifest): sha256: expected {args.sha256.strip()}, found {digest}")
        return 1
    try:
        summary = verify(manifest)
    except Difference as difference:
        print(f"DIFFERENCE: {difference}")
        return 1
    canonical = "" if raw.strip() == canonical_bytes(manifest) else " (of its canonical form)"
    print(f"OK {summary}; sha256{canonical} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
