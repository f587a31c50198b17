"""What every collector is, and how it fails."""

from __future__ import annotations

from typing import Protocol

from omnitensor_agent.readings import GpuReading


class CollectorUnavailable(RuntimeError):
    """This collector cannot work on this machine (no library, no driver, no binary, no URL).

    Raised at construction or first use; ``auto`` moves on to the next collector.
    """


class CollectorError(RuntimeError):
    """A collector that normally works failed this once (timeout, garbled output)."""


class Collector(Protocol):
    name: str

    def collect(self) -> list[GpuReading]: ...

    def close(self) -> None: ...
