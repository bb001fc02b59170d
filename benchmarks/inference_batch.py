"""NCF full-ranking evaluation of all ml-100k users with the generic scorer's old (65,536) and
new (2,048) CPU inference batch, alternated in one process (1 thread): seconds, and whether the
ranks are identical.

    RECBENCH_HOME=... python benchmarks/inference_batch.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from recbench.data import load_split
from recbench.eval.evaluator import evaluate
from recbench.runner import build_model


def main() -> None:
    torch.set_num_threads(1)
    split = load_split("ml-100k")
    model = build_model("ncf", {"epochs": "1"})
    model.fit(split.train, np.random.default_rng(0))
    seconds: dict[int, list[float]] = {65_536: [], 2_048: []}
    ranks = {}
    for r in range(5):
        for batch in (65_536, 2_048) if r % 2 == 0 else (2_048, 65_536):
            model.cpu_inference_batch = batch  # type: ignore[misc]
            t = time.perf_counter()
            ranks[batch] = evaluate(model, split.train, split.test, "full")
            seconds[batch].append(time.perf_counter() - t)
    print({b: [round(x, 2) for x in v] for b, v in seconds.items()})
    ratio = statistics.median(a / b for a, b in zip(seconds[65_536], seconds[2_048], strict=True))
    print(
        "median s",
        {b: round(statistics.median(v), 2) for b, v in seconds.items()},
        "median ratio old/new",
        round(ratio, 2),
        "ranks identical",
        bool((ranks[65_536] == ranks[2_048]).all()),
    )


if __name__ == "__main__":
    main()
