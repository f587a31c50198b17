"""What the shared cache remembers of an agent whose token authenticated, for the fast path.

An entry holds the token's node, its GPUs' limits and the fingerprint of the last inventory it
sent that changed nothing: enough to take the usual report without reading the node. The
INSERT of the fast path checks, in the same statement, that the token is still the node's, the
node is not revoked and every GPU is still the node's, so an entry can be stale without harm:
the report then takes the full path, which reads the database and writes the entry anew.
Entries live TTL_S, so an inventory is registered in full at least that often. Only this
module reads or writes them.
"""

import hashlib
import json
from dataclasses import dataclass

import msgspec

from contributors.telemetry.inventory import GpuLimits
from portal.lib import hotcache

CACHE_KEY = "agent:{digest}"
TTL_S = 600


class _Entry(msgspec.Struct):
    """An entry as stored: the node, each GPU's `GpuLimits.as_list()` by uuid, the fingerprint.
    Read on every report, so msgspec decodes and type-checks it in one pass."""

    node: int
    lim: dict[str, tuple[int, int, float | None, bool, bool]]
    inv: str = ""


_ENTRY = msgspec.json.Decoder(_Entry)
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class KnownAgent:
    node_id: int
    gpus: dict[str, GpuLimits]
    inventory: str = ""  # fingerprint of the inventory last sent, "" when it changed something

    def dumps(self) -> str:
        gpus = {uuid: limits.as_list() for uuid, limits in self.gpus.items()}
        return _encode(_Entry(self.node_id, gpus, self.inventory)).decode()

    @classmethod
    def loads(cls, text: str | None) -> "KnownAgent | None":
        """The entry, or None for none (or one written in an older shape: the full path then
        writes it anew)."""
        if not text:
            return None
        try:
            entry = _ENTRY.decode(text)
        except msgspec.MsgspecError:
            return None
        return cls(entry.node, {u: GpuLimits(*v) for u, v in entry.lim.items()}, entry.inv)

    def sent_same_inventory(self, gpus: list) -> bool:
        return bool(self.inventory) and fingerprint(gpus) == self.inventory


def fingerprint(gpus: list) -> str:
    """The same inventory, sent again, gives the same fingerprint."""
    text = json.dumps(gpus, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(token_digest: str) -> str:
    """The entry's key, for reading it in the rate limiter's round trip."""
    return CACHE_KEY.format(digest=token_digest)


def remember(token_digest: str, node_id: int, gpus: dict[str, GpuLimits], sent: list) -> None:
    """Remember the node as it now stands after a full report that sent inventory `sent`."""
    entry = KnownAgent(node_id=node_id, gpus=gpus, inventory=fingerprint(sent) if sent else "")
    hotcache.set_text(cache_key(token_digest), entry.dumps(), TTL_S)


def forget(token_digest: str) -> None:
    hotcache.delete(cache_key(token_digest))
