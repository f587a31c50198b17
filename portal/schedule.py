"""Every periodic task in one place, read by Celery beat (run exactly one beat per deployment)."""

from django.conf import settings


def beat_schedule() -> dict:
    return {
        "worker-heartbeat": {
            "task": "portal.heartbeat",
            "schedule": float(settings.WORKER_HEARTBEAT_S),
            "options": {"expires": float(settings.WORKER_HEARTBEAT_S)},
        },
        "sweep-pending-batches": {
            "task": "contributors.sweep_pending_batches",
            "schedule": float(settings.INGEST_SWEEP_EVERY_S),
            "options": {"expires": float(settings.INGEST_SWEEP_EVERY_S)},
        },
        "sweep-challenges": {
            "task": "contributors.sweep_challenges",
            "schedule": float(settings.GPU_VERIFICATION_SWEEP_S),
            "options": {"expires": float(settings.GPU_VERIFICATION_SWEEP_S)},
        },
        "refresh-rollups": {
            "task": "contributors.refresh_rollups",
            "schedule": float(settings.ROLLUP_EVERY_S),
            "options": {"expires": float(settings.ROLLUP_EVERY_S)},
        },
        "prune-telemetry": {
            "task": "contributors.prune_telemetry",
            "schedule": 3600.0,
            "options": {"expires": 3600.0},
        },
        "ensure-sample-partitions": {
            "task": "contributors.ensure_sample_partitions",
            "schedule": 3600.0,
            "options": {"expires": 3600.0},
        },
        "prune-signin-nonces": {
            "task": "contributors.prune_signin_nonces",
            "schedule": 3600.0,
            "options": {"expires": 3600.0},
        },
        "settle-due-epochs": {
            "task": "rewards.settle_due_epochs",
            "schedule": float(settings.REWARD_SETTLE_EVERY_S),
            "options": {"expires": float(settings.REWARD_SETTLE_EVERY_S)},
        },
        "evaluate-alerts": {
            "task": "contributors.evaluate_alerts",
            "schedule": float(settings.ALERT_EVALUATE_EVERY_S),
            "options": {"expires": float(settings.ALERT_EVALUATE_EVERY_S)},
        },
        "compute-public-stats": {
            "task": "rewards.compute_public_stats",
            "schedule": float(settings.PUBLIC_STATS_EVERY_S),
            "options": {"expires": float(settings.PUBLIC_STATS_EVERY_S)},
        },
        "watch-claims": {
            "task": "rewards.watch_claims",
            "schedule": float(settings.CLAIM_WATCH_EVERY_S),
            "options": {"expires": float(settings.CLAIM_WATCH_EVERY_S)},
        },
        "record-token-prices": {
            "task": "rewards.record_token_prices",
            "schedule": float(settings.PRICE_FEED_EVERY_S),
            "options": {"expires": float(settings.PRICE_FEED_EVERY_S)},
        },
    }
