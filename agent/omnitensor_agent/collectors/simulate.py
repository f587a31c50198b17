"""Synthetic GPUs for demos and tests: believable, and the same every time for a seed.

Each GPU alternates busy periods (a job id, high utilization, memory held by the job) and
idle periods (no job, utilization near zero, a little memory). Power follows utilization,
and temperature moves toward a level set by power, so charts look like real machines.
Each ``collect()`` is one step; values depend only on the seed and the step number.
"""

from __future__ import annotations

import random
import uuid as uuidlib
from dataclasses import dataclass
from datetime import datetime

from omnitensor_agent.readings import GpuReading, utcnow

# (name, memory_total_mib, idle_w, max_w): figures real boards report.
MODELS = (
    ("NVIDIA H100 80GB HBM3", 81559, 70.0, 700.0),
    ("NVIDIA GeForce RTX 4090", 24564, 20.0, 450.0),
    ("NVIDIA A100-SXM4-80GB", 81920, 60.0, 400.0),
    ("NVIDIA L40S", 46068, 35.0, 350.0),
    ("NVIDIA GeForce RTX 3090", 24576, 25.0, 350.0),
)
DRIVER_VERSION = "550.54.15"
AMBIENT_C = 30.0


@dataclass
class _GpuState:
    uuid: str
    name: str
    memory_total_mib: int
    idle_w: float
    max_w: float
    pci_bus_id: str
    rng: random.Random
    busy: bool = False
    steps_left: int = 0
    job_id: str | None = None
    job_util: float = 0.0
    job_memory_mib: int = 0
    temperature: float = AMBIENT_C + 5

    def _next_period(self) -> None:
        self.busy = not self.busy
        if self.busy:
            self.steps_left = self.rng.randint(30, 360)
            self.job_id = f"sim-job-{self.rng.getrandbits(48):012x}"
            self.job_util = self.rng.uniform(70, 98)
            self.job_memory_mib = int(self.memory_total_mib * self.rng.uniform(0.3, 0.92))
        else:
            self.steps_left = self.rng.randint(20, 240)
            self.job_id = None

    def step(self, ts: datetime) -> GpuReading:
        if self.steps_left <= 0:
            self._next_period()
        self.steps_left -= 1
        rng = self.rng
        if self.busy:
            util = min(100.0, max(0.0, rng.gauss(self.job_util, 4)))
            used = self.job_memory_mib + rng.randint(-256, 256)
        else:
            util = max(0.0, rng.gauss(0.5, 1.0))
            used = int(self.memory_total_mib * 0.01) + rng.randint(0, 64)
        used = min(self.memory_total_mib, max(0, used))
        power = self.idle_w + (self.max_w - self.idle_w) * util / 100 * rng.uniform(0.9, 1.0)
        target = AMBIENT_C + 55.0 * power / self.max_w
        # Thermal inertia: a step closes a fifth of the gap, so temperature lags load.
        self.temperature += (target - self.temperature) * 0.2
        return GpuReading(
            uuid=self.uuid,
            name=self.name,
            memory_total_mib=self.memory_total_mib,
            memory_used_mib=used,
            utilization_gpu_pct=round(util),
            temperature_c=round(self.temperature),
            power_w=round(power, 2),
            driver_version=DRIVER_VERSION,
            pci_bus_id=self.pci_bus_id,
            ts=ts,
            job_id=self.job_id,
        )


class SimulatedCollector:
    name = "simulate"

    def __init__(self, count: int, seed: int = 0, clock=utcnow) -> None:
        if count < 1:
            raise ValueError("--simulate needs at least one GPU")
        master = random.Random(seed)
        self._clock = clock
        self._gpus = []
        for index in range(count):
            model = MODELS[index % len(MODELS)]
            gpu_rng = random.Random(master.getrandbits(64))
            state = _GpuState(
                uuid=f"GPU-{uuidlib.UUID(int=gpu_rng.getrandbits(128), version=4)}",
                name=model[0],
                memory_total_mib=model[1],
                idle_w=model[2],
                max_w=model[3],
                pci_bus_id=f"00000000:{index + 1:02X}:00.0",
                rng=gpu_rng,
                # Start some GPUs mid-job so a small fleet is not idle all at once.
                busy=gpu_rng.random() < 0.5,
                steps_left=gpu_rng.randint(0, 60),
            )
            if state.busy:
                state.busy = False  # _next_period flips it back and draws the job
                state._next_period()
            self._gpus.append(state)

    def collect(self) -> list[GpuReading]:
        ts = self._clock()
        return [gpu.step(ts) for gpu in self._gpus]

    def close(self) -> None:
        pass
