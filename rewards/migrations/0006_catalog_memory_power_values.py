"""Memory sizes and board power of the catalog's seeded models (public specifications).

Sizes are the GiB the variants ship with (nvidia-smi reports slightly less, e.g. 81559 MiB for
an H100 80GB, 143771 MiB for an H200); power is the highest board power limit among the
variants, so that a GPU's telemetry can be checked against what the hardware can draw.
"""

from django.db import migrations

SPECS = {
    "B200": ([180, 192], 1000),
    "H200": ([141], 700),
    "H100": ([80, 94, 96], 700),
    "H100 PCIe": ([80], 350),
    "H800": ([80], 700),
    "GH200": ([96, 144], 1000),
    "A100": ([40, 80], 400),
    "A800": ([40, 80], 400),
    "L40S": ([48], 350),
    "L40": ([48], 300),
    "L4": ([24], 75),
    "A40": ([48], 300),
    "A30": ([24], 165),
    "A10G": ([24], 300),
    "A10": ([24], 150),
    "A16": ([16], 250),
    "A2": ([16], 60),
    "T4": ([16], 70),
    "V100": ([16, 32], 350),
    "P100": ([12, 16], 300),
    "RTX 6000 Ada": ([48], 300),
    "RTX A6000": ([48], 300),
    "RTX A5000": ([24], 230),
    "RTX A4000": ([16], 140),
    "RTX 5090": ([32], 600),
    "RTX 4090": ([24], 600),
    "RTX 4080": ([16], 400),
    "RTX 4070": ([12, 16], 285),
    "RTX 3090": ([24], 450),
    "RTX 3080": ([10, 12, 16], 350),
    "RTX 3070": ([8, 16], 290),
    "RTX 2080": ([8, 11], 350),
}


def seed(apps, schema_editor):
    GpuModel = apps.get_model("rewards", "GpuModel")
    for pattern, (sizes, power) in SPECS.items():
        GpuModel.objects.filter(pattern=pattern).update(
            memory_sizes_gib=sizes, board_power_w=power
        )


def unseed(apps, schema_editor):
    GpuModel = apps.get_model("rewards", "GpuModel")
    GpuModel.objects.filter(pattern__in=list(SPECS)).update(memory_sizes_gib=[], board_power_w=None)


class Migration(migrations.Migration):
    dependencies = [("rewards", "0005_catalog_memory_power")]
    operations = [migrations.RunPython(seed, unseed)]
