"""What a record says about the code and the machine that made it: library versions
(:func:`versions`), the git commit and whether the code differs from it (:func:`code_version`),
the CPU, its vector ISA, BLAS pools and GPU (:func:`hardware`), and the peak resident memory of a
fit (:class:`PeakMemory`).

Written into every result record (:mod:`recbench.runner`) and every benchmark record
(:mod:`recbench.bench`); ``recbench --version`` and ``--from-record`` read them too. Standard
library only at import (torch and threadpoolctl are imported when asked about), so that the
command line can ask without loading numerical libraries.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import subprocess
import threading
from importlib import metadata
from pathlib import Path
from typing import Any


def versions() -> dict[str, str]:
    """The Python version and the installed versions of recbench and the libraries that change
    its numbers (``absent`` for one not installed)."""
    out = {"python": platform.python_version()}
    for pkg in ("recbench", "numpy", "scipy", "torch", "implicit", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


@functools.cache
def code_version() -> dict[str, Any]:
    """What code makes a record: the git commit and whether the code differs from it (tracked
    changes under ``recbench/``, ``baselines/``, ``datasets.toml``, ``pyproject.toml``) when run
    from a checkout, else the installed recbench version."""
    root = Path(__file__).resolve().parents[1]
    try:
        version = metadata.version("recbench")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare source tree
        version = "unknown"
    if not (root / ".git").exists() or not (root / "pyproject.toml").exists():
        return {"version": version}
    git = ["git", "-C", str(root)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            [
                *git,
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "recbench",
                "baselines",
                "datasets.toml",
                "pyproject.toml",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"version": version}
    return {"version": version, "commit": commit, "dirty": bool(status.strip())}


def hardware(device: str = "cpu") -> dict[str, Any]:
    """The machine a record was made on: CPU model, cores, platform, torch threads, vector ISA,
    BLAS pools and, for a non-CPU ``device``, the GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}
    # the switches of the float kernels (recbench.numerics), where this process's environment sets them
    float_env = {k: os.environ[k] for k in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ}
    if float_env:
        info["float_env"] = float_env
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        # the vector ISA torch's kernels dispatch to (AVX2, AVX512, ...): one CPU model name can
        # hide several (virtual machines report "AMD EPYC" for Zen 2 to Zen 4), and float
        # results of the same code differ between them
        info["isa"] = torch.backends.cpu.get_cpu_capability()
        from threadpoolctl import threadpool_info

        info["blas"] = [
            f"{p.get('internal_api')} {p.get('version') or ''} ({p.get('num_threads')} threads)".replace("  ", " ")
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
        if device != "cpu" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


class PeakMemory:
    """Peak resident memory (MiB) during a block, sampled from /proc (falls back to the
    process high-water mark where /proc is unavailable)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss_mb(self) -> float:
        """Resident memory now (MiB)."""
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page / 2**20
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _loop(self) -> None:
        """The sampling thread: keep the highest reading until stopped."""
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())
