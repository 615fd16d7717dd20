"""Datasheet peak TFLOP/s by GPU model and precision, for model FLOPs utilisation (MFU).

Every value is the dense rate (NVIDIA datasheets print tensor-core figures "with sparsity", marked
with an asterisk; the dense rate is half of that). Precisions mean what bigtrain's recipes mean:
`fp32` is plain FP32 on the CUDA cores (TF32 off), `tf32` the TF32 tensor-core rate, `fp16` and
`bf16` the tensor-core rate with FP32 accumulate (what autocast matmuls use). Where a GPU has no
such unit (bf16 or tf32 on Volta/Turing) there is no entry: MFU is then null, never a guess.

Matching is by the name NVML and torch report, normalised (lower case, '-' and '_' as spaces,
'NVIDIA'/'Tesla' dropped) and matched as a whole against each entry's pattern, so 'NVIDIA H100 PCIe'
never matches the SXM entry and an unknown variant matches nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class Peak:
    """A peak rate from the table: its value, where it came from, and which entry matched."""

    tflops: float
    source: str
    matched_name: str


@dataclass(frozen=True)
class _Entry:
    name: str
    pattern: str  # full-match regex over the normalised device name
    tflops: dict[str, float]
    source: str


_HALVED = "; tensor-core figures are the datasheet's sparse values halved"
#: An optional memory size as NVML writes it after the model: ' 80gb', ' 480gb', ' 144g'.
_MEMORY = r"( \d+gb?)?"

#: Most specific first: the first entry whose pattern matches the whole normalised name wins.
_TABLE: tuple[_Entry, ...] = (
    # Hopper. H200 SXM: FP32 67, TF32 989*, BF16/FP16 1,979* TFLOPS.
    _Entry("H200 NVL", r"h200 nvl" + _MEMORY,
           {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5},
           "NVIDIA H200 datasheet, H200 NVL column (TF32 835*, BF16/FP16 1,671*)" + _HALVED),
    _Entry("H200 SXM", r"h200( sxm\d?)?" + _MEMORY + r"( hbm3e)?",
           {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5},
           "NVIDIA H200 datasheet, H200 SXM column (TF32 989*, BF16/FP16 1,979*)" + _HALVED),
    # NVML: 'NVIDIA GH200 480GB', 'NVIDIA GH200 144G HBM3e', 'NVIDIA GH200 96GB HBM3'.
    _Entry("GH200", r"gh200" + _MEMORY + r"( hbm3e?)?",
           {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5},
           "NVIDIA GH200 Grace Hopper datasheet (H100-class GPU: TF32 989*, BF16/FP16 1,979*)" + _HALVED),
    _Entry("H100 NVL", r"h100 nvl" + _MEMORY,
           {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5},
           "NVIDIA H100 datasheet, H100 NVL column (TF32 835*, BF16/FP16 1,671*)" + _HALVED),
    _Entry("H100 PCIe", r"h100( \d+gb)?( hbm2e)? pcie( \d+gb)?",
           {"fp32": 51.0, "tf32": 378.0, "fp16": 756.5, "bf16": 756.5},
           "NVIDIA H100 datasheet, H100 PCIe column (TF32 756*, BF16/FP16 1,513*)" + _HALVED),
    # NVML calls the SXM5 part 'NVIDIA H100 80GB HBM3', and some drivers and clouds plain
    # 'NVIDIA H100': the PCIe and NVL parts always name their form factor, so a bare H100 is SXM.
    _Entry("H100 SXM", r"h100( sxm\d?)?" + _MEMORY + r"( hbm3)?",
           {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5},
           "NVIDIA H100 datasheet, H100 SXM column (TF32 989*, BF16/FP16 1,979*)" + _HALVED),
    # Ampere data centre. The A100 datasheet gives the same peaks for SXM and PCIe, 40 and 80 GB.
    _Entry("A100 SXM", r"a100 sxm4 (40|80)gb|a100 sxm4?( (40|80)gb)?",
           {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
           "NVIDIA A100 datasheet, A100 SXM columns (FP32 19.5, TF32 156, BF16/FP16 312 dense)"),
    _Entry("A100 PCIe", r"a100 pcie (40|80)gb|a100 (40|80)gb pcie|a100 pcie",
           {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
           "NVIDIA A100 datasheet, A100 PCIe columns (FP32 19.5, TF32 156, BF16/FP16 312 dense)"),
    _Entry("A30", r"a30( \d+gb)?( pcie)?",
           {"fp32": 10.3, "tf32": 82.0, "fp16": 165.0, "bf16": 165.0},
           "NVIDIA A30 datasheet (FP32 10.3, TF32 82, BF16/FP16 165 dense)"),
    _Entry("A40", r"a40",
           {"fp32": 37.4, "tf32": 74.8, "fp16": 149.7, "bf16": 149.7},
           "NVIDIA A40 datasheet (FP32 37.4, TF32 74.8, BF16/FP16 149.7 dense)"),
    _Entry("A10", r"a10",  # not the A10G, whose rates NVIDIA does not publish
           {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0, "bf16": 125.0},
           "NVIDIA A10 datasheet (FP32 31.2, TF32 62.5, BF16/FP16 125 dense)"),
    # Ada data centre.
    _Entry("L40S", r"l40s",
           {"fp32": 91.6, "tf32": 183.0, "fp16": 362.05, "bf16": 362.05},
           "NVIDIA L40S datasheet (FP32 91.6, TF32 183, BF16/FP16 362.05 dense)"),
    _Entry("L40", r"l40",
           {"fp32": 90.5, "tf32": 90.5, "fp16": 181.05, "bf16": 181.05},
           "NVIDIA L40 datasheet (FP32 90.5, TF32 90.5, BF16/FP16 181.05 dense)"),
    _Entry("L4", r"l4",
           {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0},
           "NVIDIA L4 datasheet (FP32 30.3, TF32 120*, BF16/FP16 242*)" + _HALVED),
    # Volta and Turing: FP16 tensor cores only; no TF32 or BF16 units.
    _Entry("V100S PCIe", r"v100s pcie( \d+gb)?",
           {"fp32": 16.4, "fp16": 130.0},
           "NVIDIA V100 datasheet, V100S PCIe column (FP32 16.4, tensor 130)"),
    _Entry("V100 SXM2", r"v100 sxm2( \d+gb)?",
           {"fp32": 15.7, "fp16": 125.0},
           "NVIDIA V100 datasheet, V100 SXM2 column (FP32 15.7, tensor 125)"),
    _Entry("V100 PCIe", r"v100 pcie( \d+gb)?",
           {"fp32": 14.0, "fp16": 112.0},
           "NVIDIA V100 datasheet, V100 PCIe column (FP32 14, tensor 112)"),
    _Entry("T4", r"t4",
           {"fp32": 8.1, "fp16": 65.0},
           "NVIDIA T4 datasheet (FP32 8.1, mixed-precision FP16/FP32 65)"),
    # Workstation and desktop: the Ampere GA102 and Ada AD102 whitepapers' appendix tables
    # ("Peak FP16/BF16 Tensor TFLOPS with FP32 Accumulate", dense column).
    _Entry("RTX 6000 Ada", r"rtx 6000 ada generation|rtx 6000 ada",
           {"fp32": 91.1, "tf32": 182.1, "fp16": 364.2, "bf16": 364.2},
           "NVIDIA Ada Lovelace architecture whitepaper, RTX 6000 Ada (FP32 91.1, TF32 182.1, "
           "FP16/BF16 with FP32 accumulate 364.2 dense)"),
    _Entry("RTX A6000", r"rtx a6000",
           {"fp32": 38.7, "tf32": 77.4, "fp16": 154.8, "bf16": 154.8},
           "NVIDIA Ampere GA102 whitepaper, RTX A6000 (FP32 38.7, TF32 77.4, "
           "FP16/BF16 with FP32 accumulate 154.8 dense)"),
    # GeForce runs FP16/BF16 with FP32 accumulate at half the FP16-accumulate rate.
    _Entry("GeForce RTX 4090", r"geforce rtx 4090",
           {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2},
           "NVIDIA Ada Lovelace architecture whitepaper, GeForce RTX 4090 (FP32 82.6, TF32 82.6, "
           "FP16/BF16 with FP32 accumulate 165.2 dense)"),
    _Entry("GeForce RTX 3090", r"geforce rtx 3090",
           {"fp32": 35.6, "tf32": 35.6, "fp16": 71.0, "bf16": 71.0},
           "NVIDIA Ampere GA102 whitepaper, GeForce RTX 3090 (FP32 35.6, TF32 35.6, "
           "FP16/BF16 with FP32 accumulate 71 dense)"),
)


def normalise_name(device_name: str) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'a100 sxm4 80gb'."""
    name = device_name.lower().replace("-", " ").replace("_", " ")
    name = re.sub(r"\s+", " ", name).strip()
    name = re.sub(r"^(nvidia |tesla )+", "", name)
    return name


def lookup_peak(device_name: str | None, precision: str) -> Peak | None:
    """The datasheet dense peak for this GPU and precision; None for a CPU, an unknown GPU, or a
    precision the GPU has no unit for."""
    if not device_name:
        return None
    name = normalise_name(device_name)
    for entry in _TABLE:
        if re.fullmatch(entry.pattern, name):
            tflops = entry.tflops.get(precision)
            if tflops is None:
                return None
            return Peak(tflops=tflops, source=entry.source, matched_name=entry.name)
    return None
