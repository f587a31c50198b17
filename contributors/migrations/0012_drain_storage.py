"""What a drain writes, cheaper for PostgreSQL (issue 21, "Ingest per sample").

- Telemetry batches lose the index on `received_at` alone: (status, received_at) serves every
  lookup by time (the sweeper, metrics, retention), and each index costs a write when a batch
  is accepted and another when it is processed.
- The rows a drain updates in place (a GPU's live state and a node's last report every batch,
  the current minute, hour and usage accumulator of each GPU many times over) get room on
  their page (`fillfactor`), so that PostgreSQL can write the new version beside the old one
  without touching any index (a HOT update: none of the columns they change is indexed).
  Packed full, nearly every such update wrote a new entry into each of the table's indexes.
  Pages already full get the room as they are rewritten; new pages have it at once.

SQLite has no such setting; there the migration only drops the index.
"""

import django.utils.timezone
from django.db import migrations, models

# table -> percent of each page filled by inserts, the rest left for updates of its rows
FILLFACTOR = {
    "contributors_gpu": 70,
    "contributors_node": 70,
    "contributors_gpuminute": 80,
    "contributors_gpuhour": 70,
    "rewards_usageaccumulator": 70,
}


def alter(schema_editor, change: str) -> None:
    with schema_editor.connection.cursor() as cursor:
        # PostgreSQL alters no table with foreign key checks still pending in this transaction
        # (rows written earlier in it): run them now, as Django does before it drops one.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for name, percent in FILLFACTOR.items():
            cursor.execute(f"ALTER TABLE {name} {change.format(percent=int(percent))}")


def leave_room(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        alter(schema_editor, "SET (fillfactor = {percent})")


def pack(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        alter(schema_editor, "RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("contributors", "0011_sample_day_partitions"),
        # rewards_usageaccumulator, which the drains update with the GPUs' rollups
        ("rewards", "0012_usage_accumulators"),
    ]

    operations = [
        migrations.AlterField(
            model_name="telemetrybatch",
            name="received_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.RunPython(leave_room, pack, elidable=False),
    ]
