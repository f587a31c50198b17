"""POST /api/v1/agent/telemetry read by msgspec (`validation.read_report`): a report whose
fields all have their types and fixed bounds is decoded and checked in one pass, any other
body is read as plain JSON and checked field by field, and both ways give the same answer,
the same stored samples and the same flags, down to an int staying an int.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contributors.telemetry import intake
from contributors.telemetry.inventory import GpuLimits, Inventory
from contributors.telemetry.validation import Report, batch_fields, read_report
from portal.lib.json_bodies import parse_object
from tests.support.agent_api import H100, batch, nvml_uuid, sample

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
OWN = nvml_uuid("own")
MIG = nvml_uuid("mig", kind="MIG")
FOREIGN = nvml_uuid("foreign")
GPUS = {
    OWN: GpuLimits(id=1, total_mib=81559, max_power_w=1050.0, reports_utilization=True,
                   capped=False),
    MIG: GpuLimits(id=2, total_mib=10240, max_power_w=None, reports_utilization=False,
                   capped=True),
}  # fmt: skip


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _outcome(body):
    """What the request side makes of a body: the batch row's samples, the answer, the flags."""
    fields = batch_fields(body)
    inventory = Inventory(gpus=GPUS, foreign={FOREIGN})
    made = intake._new_batch(7, fields, NOW, inventory, [])
    return (fields.batch_id, fields.sent_at, fields.gpus, made.samples, made.response,
            made.implausible)  # fmt: skip


def _both_ways(raw: bytes):
    """The outcome of the typed read and of the plain JSON read, or the errors they raise."""
    results = []
    for read in (read_report, parse_object):
        try:
            results.append(_outcome(read(raw)))
        except Exception as exc:  # noqa: BLE001 - the same refusal both ways is the point
            results.append((type(exc).__name__, getattr(exc, "status", None), str(exc)))
    return results


def test_a_well_formed_report_is_read_typed():
    raw = json.dumps(batch([sample(OWN, NOW)])).encode()
    assert isinstance(read_report(raw), Report)


@pytest.mark.parametrize(
    "overrides",
    [
        {"memory_used_mib": "40000"},
        {"memory_used_mib": 40000.0},
        {"utilization_gpu_pct": True},
        {"utilization_gpu_pct": 100.5},
        {"temperature_c": -41},
        {"job_id": 5},
        {"gpu_uuid": None},
    ],
)
def test_a_sample_outside_its_type_or_bounds_sends_the_body_the_general_way(overrides):
    raw = json.dumps(batch([sample(OWN, NOW), sample(OWN, NOW, **overrides)])).encode()
    assert isinstance(read_report(raw), dict)
    typed, general = _both_ways(raw)
    assert typed == general


READING = st.one_of(
    st.none(),
    st.integers(-50, 6000),
    st.floats(-50, 6000),
    st.sampled_from([True, "1", 1e400, -1e400, 10**30]),
)
TIMES = [
    _iso(NOW), _iso(NOW - timedelta(seconds=10)), _iso(NOW - timedelta(seconds=20)),
    "2026-05-01T13:00:00+01:00", _iso(NOW - timedelta(hours=25)),
    _iso(NOW + timedelta(minutes=10)), "2026-05-01T11:59:00", "soon",
]  # fmt: skip
SAMPLE = st.fixed_dictionaries(
    {
        "gpu_uuid": st.sampled_from([OWN, OWN.upper(), MIG, FOREIGN, nvml_uuid("x"), 5, None]),
        "ts": st.sampled_from([*TIMES, 17]),
        "memory_used_mib": st.one_of(
            st.integers(-1, 90000), st.sampled_from([40000.0, False, "1", 2**70])
        ),
        "memory_total_mib": st.one_of(
            st.integers(-1, 90000), st.sampled_from([81559, 10240, 0, 16 * 1024 * 1024 + 1])
        ),
    },
    optional={
        "utilization_gpu_pct": READING,
        "temperature_c": READING,
        "power_w": READING,
        "job_id": st.sampled_from([None, "", "job-1", "j" * 129, "tab\there", 5]),
        "extra": st.sampled_from([[1, [2]], {"k": None}, "x"]),
    },
)

# Samples of the right types within their fixed bounds (the typed way), with what still
# refuses or flags them per sample: GPU, time, memory, job id, power, MIG utilization.
TYPED_SAMPLE = st.fixed_dictionaries(
    {
        "gpu_uuid": st.sampled_from([OWN, OWN, OWN.upper(), MIG, FOREIGN, nvml_uuid("x")]),
        "ts": st.sampled_from(TIMES),
        "memory_used_mib": st.one_of(
            st.integers(0, 90000), st.sampled_from([0, 1, 10240, 10241, 81559, 90000])
        ),
        "memory_total_mib": st.sampled_from([81559, 10240, 90000, 1]),
    },
    optional={
        "utilization_gpu_pct": st.one_of(st.none(), st.integers(0, 100), st.floats(0, 100)),
        "temperature_c": st.one_of(st.none(), st.integers(-40, 150), st.floats(-40, 150)),
        "power_w": st.one_of(st.none(), st.integers(0, 5000), st.floats(0, 5000)),
        "job_id": st.sampled_from([None, "", "job-1", "j" * 128, "j" * 129, "tab\there", "é"]),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=st.lists(
        st.one_of(TYPED_SAMPLE, TYPED_SAMPLE, SAMPLE, st.sampled_from([[1], "s", None])),
        max_size=6,
    ),
    gpus=st.sampled_from([None, [], [H100], "many"]),
)
def test_both_ways_give_the_same_answer_samples_and_flags(samples, gpus):
    body = batch(samples, sent_at=_iso(NOW))
    if gpus is not None:
        body["gpus"] = gpus
    typed, general = _both_ways(json.dumps(body).encode())
    assert typed == general
    if len(typed) == 6:  # accepted: an int stays an int, a float a float, whichever way
        types = [[[type(v) for v in s] for s in outcome[3]] for outcome in (typed, general)]
        assert types[0] == types[1]


@pytest.mark.parametrize(
    "raw",
    [
        # msgspec skips a field it does not know without reading its bytes: not UTF-8 is
        # still not JSON.
        b'{"batch_id":"00000000-0000-4000-8000-000000000000","sent_at":"2026-05-01T12:00:00Z",'
        b'"samples":[],"note":"\xff"}',
        # an encoded surrogate, which `json` reads (surrogatepass) and msgspec does not
        b'{"batch_id":"00000000-0000-4000-8000-000000000000","sent_at":"2026-05-01T12:00:00Z",'
        b'"samples":[],"note":"\xed\xa0\x80"}',
        b'{"batch_id":"00000000-0000-4000-8000-000000000000","sent_at":"2026-05-01T12:00:00Z",'
        b'"samples":[],"note":"\\ud800"}',
        b'{"batch_id":"00000000-0000-4000-8000-000000000000","sent_at":"2026-05-01T12:00:00Z",'
        b'"samples":[],"note":"\\u0000"}',
        b'\xef\xbb\xbf{"batch_id":"00000000-0000-4000-8000-000000000000",'
        b'"sent_at":"2026-05-01T12:00:00Z","samples":[]}',
        b'{"batch_id":"00000000-0000-4000-8000-000000000000","sent_at":"2026-05-01T12:00:00Z",'
        b'"samples":[],"note":NaN}',
        b'{"batch_id":"00000000-0000-4000-8000-000000000000","sent_at":"2026-05-01T12:00:00Z",'
        b'"samples":[]} trailing',
        b'{"batch_id":"00000000-0000-4000-8000-000000000000","sent_at":"2026-05-01T12:00:00Z",'
        b'"samples":' + b"[" * 40 + b"]" * 40 + b"}",
    ],
)
def test_bodies_the_typed_read_refuses_get_the_general_answer(raw):
    assert not isinstance(read_report(raw) if _parses(raw) else None, Report)
    typed, general = _both_ways(raw)
    assert typed == general


def _parses(raw: bytes) -> bool:
    try:
        parse_object(raw)
    except Exception:  # noqa: BLE001
        return False
    return True


def test_a_duplicated_key_counts_its_last_value_both_ways():
    one = json.dumps(sample(OWN, NOW))
    doubled = one.replace('"memory_used_mib": 40000', '"memory_used_mib": 1, "memory_used_mib": 2')
    raw = json.dumps(batch(["@"], sent_at=_iso(NOW))).replace('"@"', doubled).encode()
    assert isinstance(read_report(raw), Report)
    typed, general = _both_ways(raw)
    assert typed == general
    assert typed[3][0][3] == 2


@pytest.mark.django_db
def test_a_body_not_utf8_in_a_field_nobody_reads_is_still_invalid_json(agent):
    raw = json.dumps(batch([sample(H100["uuid"])], note="@")).encode().replace(b"@", b"\xff")
    response = agent.send(raw, raw=True)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


@pytest.mark.django_db
def test_a_utf16_report_is_still_read(agent):
    raw = json.dumps(batch([sample(H100["uuid"])])).encode("utf-16")
    response = agent.send(raw, raw=True)

    assert response.status_code == 202
    assert response.json()["accepted"] == 1


@pytest.mark.django_db
def test_a_typed_report_stores_its_samples_as_sent(agent):
    body = batch([sample(H100["uuid"], utilization_gpu_pct=87, temperature_c=61.5, job_id="j")])
    response = agent.send(body)

    assert response.status_code == 202
    stored = agent.batch_row(body["batch_id"]).samples
    assert stored[0][2:] == [87, 40000, 81559, 61.5, 512.25, "j"]
    assert isinstance(stored[0][2], int)
