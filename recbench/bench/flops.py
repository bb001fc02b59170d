"""FLOPs and the machine's peak: the fp32 matrix-product rate measured in-process, FLOPs of one
training step counted with :class:`torch.utils.flop_counter.FlopCounterMode`, parameter counts.

``FlopCounterMode`` counts the matrix products (``mm``/``addmm``/``bmm``/attention/convolution),
not element-wise work or embedding gathers, so the achieved rate ``FLOPs/sample × samples/s`` is
directly comparable with the square ``torch.mm`` peak of :func:`matmul_peak`.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from recbench.data.types import Split
from recbench.models.base import Model

__all__ = ["count_step_flops", "matmul_peak", "parameter_count"]


def torch_device(device: str) -> Any:
    """``device`` as a ``torch.device`` (``auto`` resolved), through the training loop's resolver."""
    from recbench.models.torch import resolve_device

    return resolve_device(device)


def sync(device: Any) -> None:
    """Wait for the device's queued work (CUDA), so a timer measures it."""
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_peak(device: str = "cpu", n: int | None = None, repeats: int = 5, warmup: int = 2) -> dict[str, Any]:
    """The machine's fp32 matrix-product rate: median of ``repeats`` timed ``torch.mm`` of two
    random ``n × n`` float32 matrices (``2 n³`` FLOPs each) after ``warmup`` untimed ones.
    On CUDA, TF32 is switched off for the measurement (a true fp32 peak) and restored after."""
    import torch

    dev = torch_device(device)
    n = int(n or (8192 if dev.type == "cuda" else 2048))
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev)
    b = torch.randn(n, n, generator=g).to(dev)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        times = []
        for k in range(warmup + repeats):
            sync(dev)
            t0 = time.perf_counter()
            c = torch.mm(a, b)
            sync(dev)
            dt = time.perf_counter() - t0
            if k >= warmup:
                times.append(dt)
        del c
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    flops = 2.0 * n**3
    med = float(statistics.median(times))
    return {
        "n": n,
        "dtype": "float32",
        "flops": flops,
        "seconds": times,
        "median_s": med,
        "flops_per_s": flops / med,
        "best_flops_per_s": flops / min(times),
        "torch_threads": torch.get_num_threads(),
    }


def parameter_count(model: Model) -> int | None:
    """Trainable numbers of a fitted model: the module's parameters for PyTorch models, the
    float arrays a model keeps as its learned state otherwise (e.g. BPR's factor matrices)."""
    module = getattr(model, "module", None)
    if module is not None:
        return int(sum(p.numel() for p in module.parameters()))
    arrays = [
        v for k, v in vars(model).items() if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not k.startswith("_")
    ]
    return int(sum(a.size for a in arrays)) if arrays else None


def _one_batch(model: Any, split: Split, rng: np.random.Generator) -> tuple[tuple[Any, ...], int]:
    """The first training batch of ``model.batches`` (the model's own sampling scheme, as the
    trainer draws it) and the number of samples it holds."""
    batches = model.batches(split.train, rng)
    args = next(batches)
    return args, batches.done


def count_step_flops(model: Any, split: Split, rng: np.random.Generator | None = None) -> dict[str, Any]:
    """FLOPs of one training step (forward + backward of ``batch_loss`` on one real batch) of a
    fitted PyTorch model, counted with ``FlopCounterMode``; the model's parameters, buffers
    (e.g. batch-norm statistics) and caches are restored afterwards, so it can run between
    fitting and evaluating."""
    from torch.utils.flop_counter import FlopCounterMode

    module = model.module
    assert module is not None, "count_step_flops needs a fitted PyTorch model"
    rng = rng if rng is not None else np.random.default_rng(0)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    was_training = module.training
    model.invalidate_cache()
    module.train()
    try:
        args, samples = _one_batch(model, split, rng)
        counter = FlopCounterMode(display=False)
        with counter:
            loss = model.batch_loss(*args)
            loss.backward()
        total = int(counter.get_total_flops())
        by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    finally:
        module.zero_grad(set_to_none=True)
        module.load_state_dict(state)
        module.train(was_training)
        model.invalidate_cache()
    return {
        "flops_per_step": total,
        "samples_per_step": samples,
        "flops_per_sample": total / max(samples, 1),
        "by_op": by_op,
    }
