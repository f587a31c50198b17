"""Seed the GPU performance catalog with common data-centre and consumer GPUs.

Weights are relative dense FP16/BF16 tensor throughput, NVIDIA A100 = 1, rounded; admins rate
anything else (or re-rate these) in the admin. The empty pattern is the default for unknown
models.
"""

from decimal import Decimal

from django.db import migrations

CATALOG = [
    ("", "0.1000", "default for models nobody has rated yet"),
    ("B200", "7.0000", ""),
    ("H200", "3.2000", ""),
    ("H100", "3.0000", ""),
    ("H100 PCIe", "2.4000", ""),
    ("H800", "3.0000", ""),
    ("GH200", "3.2000", ""),
    ("A100", "1.0000", "the reference"),
    ("A800", "1.0000", ""),
    ("L40S", "1.1500", ""),
    ("L40", "0.5800", ""),
    ("L4", "0.3900", ""),
    ("A40", "0.5000", ""),
    ("A30", "0.5300", ""),
    ("A10G", "0.4000", ""),
    ("A10", "0.4000", ""),
    ("A16", "0.1200", ""),
    ("A2", "0.1200", ""),
    ("T4", "0.2100", ""),
    ("V100", "0.4000", ""),
    ("P100", "0.0700", ""),
    ("RTX 6000 Ada", "1.1600", ""),
    ("RTX A6000", "0.5000", ""),
    ("RTX A5000", "0.3500", ""),
    ("RTX A4000", "0.2500", ""),
    ("RTX 5090", "0.7000", ""),
    ("RTX 4090", "0.5300", ""),
    ("RTX 4080", "0.3900", ""),
    ("RTX 4070", "0.2100", ""),
    ("RTX 3090", "0.2300", ""),
    ("RTX 3080", "0.1900", ""),
    ("RTX 3070", "0.1300", ""),
    ("RTX 2080", "0.1300", ""),
]


def seed(apps, schema_editor):
    GpuModel = apps.get_model("rewards", "GpuModel")
    for pattern, weight, notes in CATALOG:
        GpuModel.objects.get_or_create(
            pattern=pattern, defaults={"weight": Decimal(weight), "notes": notes}
        )


def unseed(apps, schema_editor):
    GpuModel = apps.get_model("rewards", "GpuModel")
    GpuModel.objects.filter(pattern__in=[p for p, _, _ in CATALOG]).delete()


class Migration(migrations.Migration):
    dependencies = [("rewards", "0002_ledger")]

    operations = [migrations.RunPython(seed, unseed)]
