"""Times as the API and pages write and read them: RFC 3339, stored and written in UTC with a
`Z` (DESIGN.md conventions)."""

from datetime import UTC, datetime


def rfc3339(moment: datetime, timespec: str = "auto") -> str:
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def rfc3339_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def parse_time(value) -> datetime | None:
    """An RFC 3339 date-time with an offset, in UTC; None for anything else."""
    if not isinstance(value, str) or len(value) > 40 or "T" not in value.upper():
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return None
        # Every time is stored in UTC: one that cannot be expressed there is no time at all.
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
