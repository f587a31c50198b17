"""GET /api/v1/agent/config: what a node's agent reads back (its GPUs with the owner's choices,
and the sampling and reporting intervals), with the node's token only.
"""

import pytest
from django.test import Client

from contributors.models import GPU
from tests.support.agent_api import CONFIG, H100, Agent, enroll, gpu, nvml_uuid

pytestmark = pytest.mark.django_db


def test_config_lists_the_nodes_gpus_with_defaults(alice):
    small = gpu(nvml_uuid("small"), name="NVIDIA GeForce RTX 4090", memory_total_mib=24564)
    agent = Agent(enroll(alice, [H100, small]))
    response = agent.config()

    assert response.status_code == 200
    assert response.json() == {
        "node_id": agent.node_id,
        "sample_interval_s": 10,
        "report_interval_s": 30,
        "gpus": [
            {"uuid": H100["uuid"], "committed_memory_mib": 81559, "enabled": True},
            {"uuid": small["uuid"], "committed_memory_mib": 24564, "enabled": True},
        ],
        "challenges": [],  # proof of GPU is off in this test (tests/test_gpu_verification.py)
    }


def test_config_reflects_the_owners_choices(agent):
    GPU.objects.filter(uuid=H100["uuid"]).update(committed_memory_mib=40000)
    assert agent.config().json()["gpus"] == [
        {"uuid": H100["uuid"], "committed_memory_mib": 40000, "enabled": True}
    ]

    GPU.objects.filter(uuid=H100["uuid"]).update(enabled=False)
    assert agent.config().json()["gpus"] == [
        {"uuid": H100["uuid"], "committed_memory_mib": 40000, "enabled": False}
    ]


def test_config_follows_the_intervals_setting(agent, settings):
    settings.AGENT_SAMPLE_INTERVAL_S = 5
    settings.AGENT_REPORT_INTERVAL_S = 15
    body = agent.config().json()
    assert (body["sample_interval_s"], body["report_interval_s"]) == (5, 15)


def test_config_needs_a_valid_token(agent):
    assert Client().get(CONFIG).json()["error"] == "invalid_token"
    assert Client().get(CONFIG).status_code == 401
    agent.node.revoke()
    response = agent.config()
    assert (response.status_code, response.json()["error"]) == (403, "token_revoked")
