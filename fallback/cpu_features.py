"""The CPU features that decide ONNX Runtime's int8 path, read from the operating system
(no onnxruntime import): `/proc/cpuinfo` on Linux, `sysctl` on macOS.

The int8 graph (`convert.onnx_int8`) runs `MatMulNBits` with int8 activations. MLAS has that
kernel on x86-64 with AVX2+FMA (AVX-VNNI, AVX-512 and AVX-512 VNNI variants) and on ARM64 with
the dot-product instructions (an i8mm variant where present), all summing products in int32.
Without one of those, ONNX Runtime falls back to dequantising the weights and computing in fp32,
which is slower than the fp32 graph: there `auto` takes fp32.
"""
from __future__ import annotations

import functools
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# (label, Linux /proc/cpuinfo flag, macOS sysctl name) of the features `hhg bench` and `hhg model info` show
X86_FEATURES = (("AVX2", "avx2", "machdep.cpu.leaf7_features:AVX2"),
                ("AVX-512", "avx512bw", "machdep.cpu.leaf7_features:AVX512BW"),
                ("AVX-512 VNNI", "avx512_vnni", "machdep.cpu.leaf7_features:AVX512VNNI"),
                ("AVX-VNNI", "avx_vnni", None),
                ("AMX", "amx_int8", None))
ARM_FEATURES = (("dotprod", "asimddp", "hw.optional.arm.FEAT_DotProd"),
                ("i8mm", "i8mm", "hw.optional.arm.FEAT_I8MM"))
_AVX512_CORE = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}


@dataclass(frozen=True)
class CpuFeatures:
    arch: str                       # "x86_64", "arm64" or what the platform reports
    flags: frozenset[str]           # Linux /proc/cpuinfo names (macOS values are mapped to them)
    known: bool = True              # False: the features could not be read (then int8 is assumed to run)

    @property
    def int8_kernel(self) -> str | None:
        """The MLAS kernel family that runs the int8 graph here, or None when it would fall back to fp32."""
        if not self.known:
            return "unknown"
        if self.arch == "x86_64" and {"avx2", "fma"} <= self.flags:
            if _AVX512_CORE <= self.flags:
                return "AVX-512 VNNI" if "avx512_vnni" in self.flags else "AVX-512 (no VNNI)"
            return "AVX-VNNI" if "avx_vnni" in self.flags else "AVX2 (no VNNI)"
        if self.arch == "arm64" and "asimddp" in self.flags:
            return "NEON i8mm" if "i8mm" in self.flags else "NEON dot product"
        return None

    def summary(self) -> str:
        """e.g. "x86_64: AVX2 yes, AVX-512 yes, AVX-512 VNNI no, AVX-VNNI no, AMX no"."""
        if not self.known:
            return f"{self.arch}: features unknown"
        table = X86_FEATURES if self.arch == "x86_64" else ARM_FEATURES if self.arch == "arm64" else ()
        return f"{self.arch}: " + (", ".join(f"{label} {'yes' if flag in self.flags else 'no'}"
                                             for label, flag, _ in table) or "no int8 features known")

    def int8_path(self) -> str:
        """What the CPU int8 precision runs on here, for `hhg bench` and `hhg model info`."""
        kernel = self.int8_kernel
        if kernel is None:
            return "none (int8 would compute in fp32 here; auto takes fp32)"
        return f"MatMulNBits 8-bit, {kernel} kernel" if kernel != "unknown" else "MatMulNBits 8-bit (kernel unknown)"


def _arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "armv8": "arm64"}.get(machine, machine)


def parse_cpuinfo(text: str) -> frozenset[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text (x86 `flags`, ARM `Features`)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def _macos_flags(arch: str) -> frozenset[str]:
    names = {sysctl: flag for _, flag, sysctl in (X86_FEATURES if arch == "x86_64" else ARM_FEATURES) if sysctl}
    flags = set()
    for sysctl, flag in names.items():
        name, _, word = sysctl.partition(":")
        try:
            value = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if (word and word in value.split()) or (not word and value.strip() == "1"):
            flags.add(flag)
    if arch == "x86_64" and "avx2" in flags:
        flags.add("fma")                              # every x86 Mac with AVX2 has FMA3
        if "avx512bw" in flags:
            flags |= _AVX512_CORE
    return frozenset(flags)


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's features (read once per process)."""
    arch = _arch()
    if sys.platform.startswith("linux"):
        try:
            return CpuFeatures(arch, parse_cpuinfo(Path("/proc/cpuinfo").read_text()))
        except OSError:
            pass
    elif sys.platform == "darwin":
        return CpuFeatures(arch, _macos_flags(arch))
    return CpuFeatures(arch, frozenset(), known=False)
