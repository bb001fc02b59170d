"""Does ``torch.compile`` pay off for OPECI's training on this CPU? (issue 17)

Times one training batch's forward and backward through the correlation block and the MLP
(``OPECIModule.interact``, where 60 % of a step's time goes), eager against
``torch.compile(interact)``, median of ``--repeats`` timings each, eager timed before and after
the compiled runs; prints the compilation's own cost too. Run on a quiet machine:

    python benchmarks/opeci_compile.py --dataset ml-100k --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from recbench.data import load_split
from recbench.models.base import FitContext
from recbench.registry import MODELS


def _median_s(f: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    split = load_split(args.dataset)
    cls = MODELS["opeci"]
    model = cls(cls.Config(epochs=0))
    model.fit(split.train, np.random.default_rng(0), FitContext())  # builds the module only
    m = model.module
    m.train()
    users, items, _ = next(model.batches(split.train, np.random.default_rng(1)))
    h0, z0 = (t.detach() for t in m.pair_factors(users, items))

    def step(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        h, z = h0.clone().requires_grad_(), z0.clone().requires_grad_()
        fn(h, z).sum().backward()

    eager = _median_s(lambda: step(m.interact), args.repeats)
    t0 = time.perf_counter()
    compiled_fn = torch.compile(m.interact)
    step(compiled_fn)
    step(compiled_fn)
    warm = time.perf_counter() - t0
    compiled = _median_s(lambda: step(compiled_fn), args.repeats)
    eager_after = _median_s(lambda: step(m.interact), args.repeats)
    best = min(eager, eager_after)
    print(
        f"block + MLP forward and backward, batch {len(users)}, {args.threads} thread(s): eager {eager * 1e3:.1f} / "
        f"{eager_after * 1e3:.1f} ms (before / after), compiled {compiled * 1e3:.1f} ms: {best / compiled:.2f}× "
        f"after {warm:.1f} s of compilation"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
