from datetime import UTC, datetime, timedelta

from omnitensor_agent.collectors import make_collector
from omnitensor_agent.collectors.simulate import SimulatedCollector


def _clock():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = iter(range(10**9))
    return lambda: start + timedelta(seconds=10 * next(step))


def _series(seed, count=3, steps=600):
    sim = SimulatedCollector(count, seed=seed, clock=_clock())
    return [[r.as_dict() for r in sim.collect()] for _ in range(steps)]


def test_same_seed_same_fleet_and_values():
    assert _series(7) == _series(7)
    assert _series(7) != _series(8)


def test_load_patterns_are_believable():
    rows = [r for tick in _series(1, count=4, steps=1500) for r in tick]
    busy = [r for r in rows if r["job_id"]]
    idle = [r for r in rows if not r["job_id"]]
    assert busy and idle, "both busy and idle periods occur"
    assert len({r["job_id"] for r in busy}) > 4, "several jobs over the run"
    avg = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    assert avg(busy, "utilization_gpu_pct") > 60 > 5 > avg(idle, "utilization_gpu_pct")
    assert avg(busy, "power_w") > 2 * avg(idle, "power_w")
    assert avg(busy, "temperature_c") > avg(idle, "temperature_c") + 10
    assert avg(busy, "memory_used_mib") > 5 * avg(idle, "memory_used_mib")
    for r in rows:
        assert 0 <= r["utilization_gpu_pct"] <= 100
        assert 0 <= r["memory_used_mib"] <= r["memory_total_mib"]
        assert r["uuid"].startswith("GPU-")


def test_samples_carry_job_and_utc_time():
    sim = make_collector("simulate", simulate=2, seed=3)
    readings = sim.collect()
    assert len(readings) == 2 and len({r.uuid for r in readings}) == 2
    sample = readings[0].to_sample()
    assert sample["ts"].endswith("Z")
    assert ("job_id" in sample) == (readings[0].job_id is not None)
