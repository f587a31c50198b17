"""Raw samples by UTC day (`contributors.partitions`, migration 0011): on PostgreSQL one
partition a day and a DEFAULT one, retention by dropping days; SQLite keeps one table.

The days used here (2025) are far from the days the test database's migration created
partitions for, so each test makes the ones it needs and finds the others in the DEFAULT
partition. DDL refuses to run on a table with foreign-key checks still deferred in the open
transaction, so tests that insert samples and then change partitions run those checks first,
as a commit would (`checked`).
"""

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from contributors import partitions, retention
from contributors.models import GPU, Sample
from contributors.partitions import DEFAULT, day_table
from contributors.telemetry import store
from tests.support.ingest import GPU_UUID, Agent, batch

pytestmark = pytest.mark.django_db

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="only PostgreSQL partitions the raw samples"
)
sqlite_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="SQLite's one table; PostgreSQL's partitions below"
)
BEFORE = ("contributors", "0010_public_profile")
AFTER = ("contributors", "0011_sample_day_partitions")


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def add_samples(gpu: GPU, times: list[datetime]) -> list[Sample]:
    return Sample.objects.bulk_create(
        Sample(gpu=gpu, ts=ts, memory_used_mib=1, memory_total_mib=40960) for ts in times
    )


def checked() -> None:
    """Run the deferred foreign-key checks now, as a commit would."""
    connection.check_constraints()


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def exists(table: str) -> bool:
    return query("SELECT to_regclass(%s) IS NOT NULL", [table])[0][0]


def where_they_are() -> dict[str, int]:
    """Samples per partition holding them."""
    return dict(
        query("SELECT tableoid::regclass::text, count(*) FROM contributors_sample GROUP BY 1")
    )


def ingested(agent: Agent, body: dict) -> int:
    """Post the batch as the agent, then store it as a worker would."""
    response = agent.send(body)
    assert response.status_code == 202, response.content
    return store.ingest(agent.batch_row(body).pk)


@pytest.fixture
def gpu():
    Agent()
    return GPU.objects.get(uuid=GPU_UUID)


@pytest.fixture
def ten_days(gpu, settings):
    """Day partitions for 1-10 March 2025, three samples each (01:00, 12:00, 23:00), and one
    sample on 20 February, which no partition covers. Retention keeps 7 days."""
    settings.RETENTION_RAW_DAYS = 7
    first = date(2025, 3, 1)
    partitions.ensure_partitions(midnight(first), days_ahead=9)
    times = [midnight(first + timedelta(days=d)) + timedelta(hours=h)
             for d in range(10) for h in (1, 12, 23)]  # fmt: skip
    add_samples(gpu, [*times, datetime(2025, 2, 20, 12, tzinfo=UTC)])
    checked()
    return midnight(date(2025, 3, 10)) + timedelta(hours=6)  # the cutoff: 3 March, 06:00


def test_retention_keeps_exactly_the_samples_newer_than_the_cutoff(ten_days):
    retention.prune(ten_days)

    left = sorted(Sample.objects.values_list("ts", flat=True))
    cutoff = ten_days - timedelta(days=7)
    assert left[0] == cutoff + timedelta(hours=6)  # 3 March, 12:00
    assert len(left) == 2 + 7 * 3


@sqlite_only
def test_sqlite_keeps_one_table_and_retention_deletes_rows(ten_days):
    assert partitions.ensure_partitions() == {}
    assert partitions.day_partitions() == {}
    assert retention.prune(ten_days) == {"samples": 8, "sample_days": 0, "minutes": 0,
                                          "batches": 0}  # fmt: skip


@postgresql_only
def test_the_sample_table_is_partitioned_by_day_with_a_default():
    strategy = query(
        "SELECT partstrat, partnatts FROM pg_partitioned_table "
        "WHERE partrelid = 'contributors_sample'::regclass"
    )
    assert strategy == [("r", 1)]
    today = timezone.now().astimezone(UTC).date()
    assert today in partitions.day_partitions()  # the migration made today's and the next
    default = query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'contributors_sample'::regclass "
        "AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'"
    )
    assert default == [(DEFAULT,)]
    # Django's view is unchanged: the model's primary key is `id`; the table's is (id, ts).
    assert Sample._meta.pk.name == "id"
    assert query(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'contributors_sample'::regclass AND contype IN ('p', 'u', 'f') "
        "ORDER BY contype"
    ) == [
        ("FOREIGN KEY (gpu_id) REFERENCES contributors_gpu(id) DEFERRABLE INITIALLY DEFERRED",),
        ("PRIMARY KEY (id, ts)",),
        ("UNIQUE (gpu_id, ts)",),
    ]


@postgresql_only
def test_ingested_samples_land_in_their_day_partition(settings):
    settings.TELEMETRY_MAX_AGE_S = 2 * 365 * 86400  # a spool kept since 2025
    now = timezone.now()
    partitions.ensure_partitions(now - timedelta(days=1), days_ahead=2)  # past midnight too
    old = datetime(2025, 5, 5, 12, tzinfo=UTC)
    agent = Agent()

    assert ingested(agent, batch(30)) == 30
    assert ingested(agent, batch(2, start=old)) == 2

    expected = {}
    for ts in Sample.objects.filter(ts__gt=old + timedelta(days=1)).values_list("ts", flat=True):
        name = day_table(ts.astimezone(UTC).date())
        expected[name] = expected.get(name, 0) + 1
    assert where_they_are() == {**expected, DEFAULT: 2}


@postgresql_only
def test_a_resent_sample_is_ignored_by_the_drain_and_refused_by_the_table():
    partitions.ensure_partitions(timezone.now() - timedelta(days=1), days_ahead=2)
    agent = Agent()
    first = batch(20)
    assert ingested(agent, first) == 20
    resent = {**first, "batch_id": str(uuid.uuid4())}  # the same samples, a new batch

    ingested(agent, resent)

    assert Sample.objects.count() == 20  # ON CONFLICT (gpu_id, ts) DO NOTHING, as before
    one = Sample.objects.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        add_samples(one.gpu, [one.ts])
    with pytest.raises(IntegrityError), transaction.atomic():
        add_samples(one.gpu, [datetime(2025, 2, 20, tzinfo=UTC)] * 2)  # in DEFAULT as well


@postgresql_only
def test_retention_drops_the_days_older_than_the_cutoff_as_tables(ten_days):
    removed = retention.prune(ten_days)

    # 1 and 2 March end before the cutoff (3 March, 06:00) and go whole; 3 March's 01:00
    # and 20 February's sample (in DEFAULT) are deleted one by one.
    assert removed == {"samples": 2, "sample_days": 2, "minutes": 0, "batches": 0}
    assert not exists(day_table(date(2025, 3, 1)))
    assert not exists(day_table(date(2025, 3, 2)))
    by_table = where_they_are()
    assert by_table.pop(day_table(date(2025, 3, 3))) == 2
    assert by_table == {day_table(date(2025, 3, d)): 3 for d in range(4, 11)}

    checked()
    assert retention.prune(ten_days) == {"samples": 0, "sample_days": 0, "minutes": 0,
                                          "batches": 0}  # fmt: skip


@postgresql_only
def test_a_busy_day_is_deleted_row_by_row_and_its_table_dropped_at_the_next_run(
    ten_days, monkeypatch
):
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "100ms")
    params = {k: v for k, v in connection.get_connection_params().items()
              if k not in ("cursor_factory", "context")}  # fmt: skip
    with psycopg.connect(**params) as other:  # a long report reading the samples
        other.execute("SET lock_timeout = '5s'")
        other.execute("LOCK TABLE ONLY contributors_sample IN ACCESS SHARE MODE")

        removed = retention.prune(ten_days)

    assert removed == {"samples": 8, "sample_days": 0, "minutes": 0, "batches": 0}
    assert exists(day_table(date(2025, 3, 1)))
    assert retention.prune(ten_days)["sample_days"] == 2
    assert not exists(day_table(date(2025, 3, 1)))
    assert Sample.objects.count() == 2 + 7 * 3


@postgresql_only
def test_a_sample_in_the_default_partition_moves_when_its_day_is_created(gpu):
    day = date(2025, 5, 5)
    moving, staying = add_samples(gpu, [midnight(day) + timedelta(hours=3), midnight(day) +
                                        timedelta(days=2)])  # fmt: skip
    checked()
    assert where_they_are() == {DEFAULT: 2}

    assert partitions.ensure_partitions(midnight(day), days_ahead=0) == {day_table(day): 1}

    assert where_they_are() == {DEFAULT: 1, day_table(day): 1}
    assert Sample.objects.get(ts=moving.ts).pk == moving.pk
    assert Sample.objects.get(ts=staying.ts).pk == staying.pk
    # Attached with the table's keys: the same (GPU, ts) is refused there too.
    with pytest.raises(IntegrityError), transaction.atomic():
        add_samples(gpu, [moving.ts])
    # Twice: the day exists, nothing happens.
    assert partitions.ensure_partitions(midnight(day), days_ahead=0) == {}


@postgresql_only
def test_ensure_partitions_makes_today_and_the_days_ahead_once(settings):
    settings.SAMPLE_PARTITIONS_AHEAD_DAYS = 2
    now = datetime(2025, 7, 1, 23, 59, tzinfo=UTC)
    days = [date(2025, 7, 1), date(2025, 7, 2), date(2025, 7, 3)]

    assert partitions.ensure_partitions(now) == {day_table(d): 0 for d in days}
    assert partitions.ensure_partitions(now) == {}

    bounds = query(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = %s",
        [day_table(days[0])],
    )
    assert bounds == [("FOR VALUES FROM ('2025-07-01 00:00:00+00') TO ('2025-07-02 00:00:00+00')",)]
    assert not query(  # the check that spared ATTACH its scan is gone
        "SELECT 1 FROM pg_constraint WHERE conname = %s", [f"{day_table(days[0])}_bounds"]
    )


@postgresql_only
def test_the_beat_task_makes_the_days_ahead(settings):
    from contributors.tasks import ensure_sample_partitions
    from portal.schedule import beat_schedule

    settings.SAMPLE_PARTITIONS_AHEAD_DAYS = 5
    entry = beat_schedule()["ensure-sample-partitions"]
    assert (entry["task"], entry["schedule"]) == ("contributors.ensure_sample_partitions", 3600)

    ensure_sample_partitions()

    today = timezone.now().astimezone(UTC).date()
    assert {today + timedelta(days=k) for k in range(6)} <= set(partitions.day_partitions())


@postgresql_only
def test_the_migration_converts_a_table_with_its_rows_and_back(gpu):
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    assert not query("SELECT 1 FROM pg_partitioned_table "
                     "WHERE partrelid = 'contributors_sample'::regclass")  # fmt: skip
    times = [datetime(2025, 1, 1, 10, tzinfo=UTC), datetime(2025, 1, 1, 11, tzinfo=UTC),
             datetime(2025, 1, 3, 23, 59, 59, tzinfo=UTC)]  # fmt: skip
    ids = [s.pk for s in add_samples(gpu, times)]
    checked()

    executor.loader.build_graph()
    executor.migrate([AFTER])

    assert where_they_are() == {day_table(date(2025, 1, 1)): 2, day_table(date(2025, 1, 3)): 1}
    assert not exists(day_table(date(2025, 1, 2)))  # only days that have rows
    assert sorted(Sample.objects.values_list("pk", "ts")) == list(zip(ids, times, strict=True))
    assert add_samples(gpu, [datetime(2025, 1, 4, tzinfo=UTC)])[0].pk == ids[-1] + 1
    assert not exists("contributors_sample_unpartitioned")
    checked()

    executor.loader.build_graph()
    executor.migrate([BEFORE])
    assert where_they_are() == {"contributors_sample": 4}
    assert add_samples(gpu, [datetime(2025, 1, 5, tzinfo=UTC)])[0].pk == ids[-1] + 2
    checked()

    executor.loader.build_graph()
    executor.migrate([AFTER])  # as the other tests expect it
    assert exists(DEFAULT)
