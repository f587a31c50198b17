from omnitensor_agent.spool import Spool


def _samples(start, count):
    return [
        {"gpu_uuid": "GPU-1", "ts": f"t{i}", "memory_used_mib": i}
        for i in range(start, start + count)
    ]


def test_resend_uses_the_same_batch_id(tmp_path):
    with Spool(tmp_path / "s.db") as spool:
        spool.add(_samples(0, 5))
        first = spool.next_batch(max_samples=3)
        again = spool.next_batch(max_samples=3)  # not marked sent: a resend
        assert again.batch_id == first.batch_id
        assert again.samples == first.samples == _samples(0, 3)
        assert again.attempts == 2
        spool.mark_sent(first.batch_id)
        second = spool.next_batch(max_samples=3)
        assert second.batch_id != first.batch_id
        assert second.samples == _samples(3, 2)
        spool.mark_sent(second.batch_id)
        assert spool.next_batch() is None
        assert spool.stats()["sent_total"] == 5


def test_pending_batch_survives_reopening(tmp_path):
    path = tmp_path / "s.db"
    with Spool(path) as spool:
        spool.add(_samples(0, 4))
        batch = spool.next_batch(max_samples=2)
    with Spool(path) as spool:  # e.g. the agent crashed before the answer arrived
        resumed = spool.next_batch(max_samples=2)
        assert resumed.batch_id == batch.batch_id
        assert resumed.samples == batch.samples
        spool.mark_sent(resumed.batch_id)
    with Spool(path) as spool:
        assert spool.stats()["queued"] == 2
        assert spool.next_batch().samples == _samples(2, 2)


def test_bound_drops_oldest_and_reports_it(tmp_path):
    with Spool(tmp_path / "s.db", max_samples=10) as spool:
        assert spool.add(_samples(0, 8)) == 0
        assert spool.add(_samples(8, 5)) == 3
        assert spool.stats()["dropped_total"] == 3
        batch = spool.next_batch(max_samples=100)
        assert [s["memory_used_mib"] for s in batch.samples] == list(range(3, 13))
    with Spool(tmp_path / "s.db", max_samples=10) as spool:
        assert spool.dropped_total() == 3  # the count persists


def test_bound_shrinks_a_pending_batch_but_keeps_its_id(tmp_path):
    with Spool(tmp_path / "s.db", max_samples=4) as spool:
        spool.add(_samples(0, 4))
        batch = spool.next_batch(max_samples=2)
        spool.add(_samples(4, 1))  # drops sample 0, which was in the batch
        resumed = spool.next_batch(max_samples=2)
        assert resumed.batch_id == batch.batch_id
        assert resumed.samples == _samples(1, 1)
        spool.add(_samples(5, 1))  # drops sample 1: the batch is now empty and gone
        assert spool.next_batch(max_samples=2).batch_id != batch.batch_id


def test_batch_respects_byte_limit_and_drop(tmp_path):
    with Spool(tmp_path / "s.db") as spool:
        spool.add(_samples(0, 10))
        batch = spool.next_batch(max_samples=1000, max_bytes=150)
        assert 1 <= len(batch.samples) < 10
        assert spool.drop_batch(batch.batch_id) == len(batch.samples)
        assert spool.stats()["rejected_total"] == len(batch.samples)
