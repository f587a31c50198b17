"""The GPU catalog: which weight a GPU model name gets (DESIGN.md "Compute units"), and what
its hardware can physically be (memory sizes, board power) for the plausibility checks."""

from dataclasses import dataclass
from decimal import Decimal

from rewards.models import GpuModel

# Used only if an admin deleted the catalog's default row (the empty pattern).
FALLBACK_WEIGHT = Decimal("0.1")
MIB_PER_GIB = 1024


@dataclass(frozen=True)
class Spec:
    """What the catalog says of one model name. `pattern` is None for a model no row rates."""

    pattern: str | None
    weight: Decimal
    memory_sizes_gib: tuple[int, ...] = ()
    board_power_w: int | None = None
    int8_tops: int | None = None

    @property
    def max_memory_mib(self) -> int | None:
        return max(self.memory_sizes_gib) * MIB_PER_GIB if self.memory_sizes_gib else None


class Catalog:
    """The catalog loaded once: `match(name)` by case-insensitive substring, longest wins."""

    def __init__(self, rows: list[tuple]):
        # Longest pattern first; among equal lengths the alphabetically first, so it is stable.
        specs = []
        for pattern, weight, *hardware in rows:
            sizes, power, tops = [*hardware, None, None, None][:3]
            sizes = tuple(int(s) for s in (sizes or []) if isinstance(s, int | float) and s > 0)
            specs.append(Spec(pattern.casefold(), weight, sizes, power, tops))
        self.rows = sorted(specs, key=lambda r: (-len(r.pattern), r.pattern))

    @classmethod
    def load(cls) -> "Catalog":
        columns = ("pattern", "weight", "memory_sizes_gib", "board_power_w", "int8_tops")
        return cls(list(GpuModel.objects.values_list(*columns)))

    def spec(self, name: str) -> Spec:
        """The longest matching row; the default row (empty pattern) counts as unrated."""
        folded = name.casefold()
        for row in self.rows:
            if row.pattern in folded:
                return row if row.pattern else Spec(None, row.weight)
        return Spec(None, FALLBACK_WEIGHT)

    def match(self, name: str) -> tuple[str | None, Decimal]:
        """(the pattern that matched, or None for the default; its weight)."""
        spec = self.spec(name)
        return spec.pattern, spec.weight

    def weight_for(self, name: str) -> Decimal:
        return self.spec(name).weight
