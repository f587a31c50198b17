"""The recursion limit of every portal process (web, Celery, manage.py).

py_ecc (under eth-account) raises it to 100,000 when imported, and py-evm (under eth-tester,
imported on an EIP-1271 check) to 12,288. A limit that high no longer stops C code that
recurses, such as `json`, before the thread's stack runs out: the process dies with SIGSEGV
instead of raising RecursionError. Signing and recovering a message or an EIP-712 voucher
recurses about 250 frames deep in py_ecc, so RECURSION_LIMIT leaves ample room above the
stack of a request or a task.
"""

import sys

import py_ecc  # noqa: F401 - imported now, so that a later import cannot raise the limit again

RECURSION_LIMIT = 2000


def restore_recursion_limit() -> None:
    """Put the limit back to RECURSION_LIMIT; cheap enough to call on every request."""
    if sys.getrecursionlimit() != RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)
