"""Times as the API and pages write them: RFC 3339 in UTC with a `Z` (DESIGN.md conventions)."""

from datetime import UTC, datetime


def rfc3339(moment: datetime, timespec: str = "auto") -> str:
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def rfc3339_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)
