"""JSON bodies nested as deep as an attacker would send them, in the shapes that matter."""

ATTACK_DEPTH = 100_000


def deep_bodies(max_bytes: int) -> dict[str, bytes]:
    """The attack in its shapes, each as deep as fits in `max_bytes` (at most ATTACK_DEPTH)."""
    arrays = min(ATTACK_DEPTH, max_bytes // 2)
    objects = min(ATTACK_DEPTH, max_bytes // len(b'{"a":'))
    return {
        "open arrays": b"[" * min(ATTACK_DEPTH, max_bytes),
        "closed arrays": b"[" * arrays + b"]" * arrays,
        "open objects": b'{"a":' * objects,
    }
