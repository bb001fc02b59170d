"""Achieved rates per stage of a training step (issue 17): for a model that cuts its step into
stages (``model.training_stages(*batch)``, OPECI: aggregation, block, MLP, optimiser), each
stage's matrix-product FLOPs (torch's ``FlopCounterMode``: matrix products and attention;
elementwise work is not counted, so memory-bound stages show low rates by construction), its
median time over ``repeats`` calls, the rate and its fraction of the machine's measured fp32
matrix-product peak. Stages run in isolation on one real batch; their times need not add up to
a whole step's (a fused step overlaps nothing on a CPU, but caches differ)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from recbench.bench.flops import _one_batch, sync
from recbench.data.types import Split


def stage_rates(
    model: Any, split: Split, rng: np.random.Generator, peak_flops_per_s: float | None = None, repeats: int = 5
) -> list[dict[str, Any]]:
    """One row per stage: ``stage``, ``ms`` (median), ``flops``, ``flops_per_s``,
    ``peak_fraction``; empty for a model without ``training_stages``. The model's weights,
    buffers and caches are restored afterwards."""
    if not hasattr(model, "training_stages") or getattr(model, "module", None) is None:
        return []
    from torch.utils.flop_counter import FlopCounterMode

    module = model.module
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    was_training = module.training
    model.invalidate_cache()
    rows = []
    try:
        args, _ = _one_batch(model, split, rng)
        for name, fn in model.training_stages(*args).items():
            counter = FlopCounterMode(display=False)
            with counter:
                fn()
            flops = int(counter.get_total_flops())
            times = []
            for _ in range(repeats):
                sync(model.device)
                t0 = time.perf_counter()
                fn()
                sync(model.device)
                times.append(time.perf_counter() - t0)
            sec = statistics.median(times)
            rate = flops / sec if flops and sec > 0 else None
            rows.append(
                {
                    "stage": name,
                    "ms": sec * 1000,
                    "flops": flops,
                    "flops_per_s": rate,
                    "peak_fraction": rate / peak_flops_per_s if rate and peak_flops_per_s else None,
                }
            )
    finally:
        module.zero_grad(set_to_none=True)
        module.load_state_dict(state)
        module.train(was_training)
        model.invalidate_cache()
    return rows
