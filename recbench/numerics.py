"""Float kernels that give the same bits on every x86-64 CPU: ``recbench run --portable-floats``.

A torch fit on the CPU is deterministic on one machine, but its float results depend on the
kernels the libraries pick for the CPU they find:

- oneMKL (torch's BLAS: every ``Linear`` and ``matmul``) dispatches by vendor and ISA: measured
  with torch 2.13, ``MKL_CBWR=AVX2``/``AVX512``/``SSE4_2`` give the same bits on an AMD EPYC
  (MKL ignores the Intel branches there) and only ``MKL_CBWR=COMPATIBLE`` changes them. oneMKL's
  documentation names ``COMPATIBLE`` as the one branch that returns the same results on every
  Intel *and* Intel-compatible CPU (conditional numerical reproducibility, at a fixed number of
  threads, which recbench pins with ``--threads``). The NCF records made on an AMD EPYC rerun
  bit for bit there and to HR@10 0.6458 against 0.6490 on an Intel Xeon (an earlier session's
  measurement): the likely cause, which no Intel machine has yet confirmed for recbench.
- ATen's own vectorised kernels (activations, reductions, optimiser steps) are compiled once per
  ISA and chosen at start-up (``ATEN_CPU_CAPABILITY``); the AVX2 build runs on every x86-64 CPU
  with AVX2 (Intel since 2013, AMD since 2015) and has no vendor dispatch: it is pinned.
- oneDNN (``torch.backends.mkldnn``) picks blockings from the cache sizes; it is turned off.

These settings must be in place before torch loads (``MKL_CBWR`` and ``ATEN_CPU_CAPABILITY`` are
read once), so the CLI calls :func:`prepare_portable_env` first and every fit checks the mode
with :func:`ensure_floats`; worker processes are spawned and inherit the environment. The mode is
part of a record's key (``"floats": "portable"``; native records keep their keys) and
``--from-record`` reruns a record in its mode. Cost, measured side by side: 1.30× s/epoch for
NCF on ml-100k, 1.77× for CADNCF on FilmTrust (medians of 3 alternated rounds,
``results/bench/README.md``): an opt-in, not the default.

Subnormal floats (|x| < 1.2e-38) are flushed to zero in every fit (``denormals = "flush"``,
``torch.set_flush_denormal``: the FTZ/DAZ bits of x86's MXCSR, which both float modes keep
deterministic). x86 cores compute with subnormals in microcode, 10-100× slower per operation, and
weight decay drives unused weights into that range: after 13 epochs on ml-100k, 9 % of OPECI's
first MLP weights (256 × 4096) and 58 % of their Adam moments were subnormal, and that one
``Linear`` over a scoring batch (3,364 pairs) took 8.3 s against 36 ms flushed (228×, one
thread); full-ranking evaluation ran at 445 pairs/s against 7,000 at epoch 2. Nothing a metric
can see is lost (the flushed values are 1e-38 of the weights that matter). A record says which
(``"denormals"``; records made before say nothing and were ``"keep"``, which ``--from-record``
reproduces); it is not part of the key.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from recbench.models.base import ConfigError

__all__ = [
    "DENORMALS",
    "FLOATS",
    "PORTABLE_ENV",
    "ensure_floats",
    "floats_in_use",
    "prepare_portable_env",
    "record_floats",
    "set_denormals",
]

FLOATS = ("native", "portable")
DENORMALS = ("flush", "keep")  # subnormal floats: flushed to zero (the default) or computed with
PORTABLE_ENV = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"}


def _env_is_portable() -> bool:
    return all(os.environ.get(k, "").upper() == v.upper() for k, v in PORTABLE_ENV.items())


def record_floats(path: Path) -> str:
    """The float mode a record file was made in (``"native"`` for one that does not say, or
    does not read: ``--from-record``'s own checks report that)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return "native"
    return str(data.get("floats", "native")) if isinstance(data, dict) else "native"


def prepare_portable_env() -> None:
    """Put :data:`PORTABLE_ENV` into this process's environment, before torch loads (a no-op
    when it is there; a ConfigError when torch was loaded without it: it would not take effect)."""
    if _env_is_portable():
        return
    if "torch" in sys.modules:
        raise ConfigError(
            "--portable-floats: torch was loaded before the float settings could be made; start the process "
            "with " + " ".join(f"{k}={v}" for k, v in PORTABLE_ENV.items()) + " in its environment"
        )
    os.environ.update(PORTABLE_ENV)


def floats_in_use() -> str:
    """``"portable"`` when this process's torch runs with the portable settings, else ``"native"``."""
    if not _env_is_portable():
        return "native"
    import torch

    return "portable" if torch.backends.cpu.get_cpu_capability() == "AVX2" else "native"


def ensure_floats(mode: str) -> None:
    """Check, before a fit, that this process computes in ``mode`` (and turn oneDNN off for a
    portable fit); a ConfigError says why it cannot."""
    if mode not in FLOATS:
        raise ConfigError(f"floats {mode!r}; valid: {', '.join(FLOATS)}")
    if mode == "native":
        if _env_is_portable():  # a native key on portable numbers would mislabel the record
            raise ConfigError(
                "this process has the portable float settings in its environment ("
                + ", ".join(f"{k}={os.environ[k]}" for k in PORTABLE_ENV)
                + "): pass --portable-floats, or unset them for a native fit"
            )
        return
    prepare_portable_env()
    import torch

    if floats_in_use() != "portable":
        raise ConfigError(
            f"--portable-floats needs a CPU with AVX2 (torch's kernels here: {torch.backends.cpu.get_cpu_capability()})"
        )
    torch.backends.mkldnn.enabled = False


def set_denormals(mode: str) -> str:
    """Flush subnormal floats to zero in this process's CPU arithmetic (``"flush"``) or compute
    with them (``"keep"``, torch's default); returns the mode in effect (``"keep"`` where the CPU
    cannot flush)."""
    if mode not in DENORMALS:
        raise ConfigError(f"denormals {mode!r}; valid: {', '.join(DENORMALS)}")
    import torch

    flushed = torch.set_flush_denormal(mode == "flush")
    return "flush" if mode == "flush" and flushed else "keep"
