"""The Celery application. Workers run `celery -A portal worker`, beat runs `celery -A portal beat`.

Configuration comes from Django settings prefixed `CELERY_`; tasks live in each app's `tasks.py`
and the periodic schedule in `portal/schedule.py`.
"""

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

from portal.lib.recursion import restore_recursion_limit

# `filesystem://` (the embedded default broker) means our atomic-write variant of kombu's.
TRANSPORT_ALIASES["filesystem"] = "portal.kombu_filesystem:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Packages inside an app with tasks of their own.
app.autodiscover_tasks(["rewards.public"])
restore_recursion_limit()


@app.on_after_finalize.connect
def _install_schedule(sender: Celery, **kwargs) -> None:
    from portal.schedule import beat_schedule

    sender.conf.beat_schedule = beat_schedule()
