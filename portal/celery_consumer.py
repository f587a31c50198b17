"""The worker's broker consumer: Celery's, reconnecting to a lost broker every second.

kombu retries a lost broker after 2, 4, 6 … up to 30 s: after an outage of a minute a worker
would sleep up to half a minute more once the broker is back, with telemetry waiting all that
while. A reconnection attempt a second costs a worker nothing. Only workers import this module
(`worker_consumer`, set in portal/settings.py).
"""

from functools import partial

from celery.worker.consumer import Consumer as CeleryConsumer

RECONNECT_EVERY_S = 1.0


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn):
        conn.ensure_connection = partial(
            conn.ensure_connection,
            interval_start=RECONNECT_EVERY_S,
            interval_step=RECONNECT_EVERY_S,
            interval_max=RECONNECT_EVERY_S,
        )
        return super().ensure_connected(conn)
