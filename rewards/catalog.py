"""The GPU performance catalog: which weight a GPU model name gets (DESIGN.md "Compute units")."""

from decimal import Decimal

from rewards.models import GpuModel

# Used only if an admin deleted the catalog's default row (the empty pattern).
FALLBACK_WEIGHT = Decimal("0.1")


class Catalog:
    """The catalog loaded once: `weight_for(name)` by case-insensitive substring, longest wins."""

    def __init__(self, rows: list[tuple[str, Decimal]]):
        # Longest pattern first; among equal lengths the alphabetically first, so it is stable.
        self.rows = sorted(((p.casefold(), w) for p, w in rows), key=lambda r: (-len(r[0]), r[0]))

    @classmethod
    def load(cls) -> "Catalog":
        return cls(list(GpuModel.objects.values_list("pattern", "weight")))

    def match(self, name: str) -> tuple[str | None, Decimal]:
        """(the pattern that matched, or None for the fallback; its weight)."""
        folded = name.casefold()
        for pattern, weight in self.rows:
            if pattern in folded:
                return pattern, weight
        return None, FALLBACK_WEIGHT

    def weight_for(self, name: str) -> Decimal:
        return self.match(name)[1]
