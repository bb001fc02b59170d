"""``python -m recbench.bench ...``: the ``recbench bench`` commands without the console script
(``benchmarks/gpu.sh`` runs them so on a machine where nothing is installed)."""

from recbench.bench.cli import bench_app

if __name__ == "__main__":  # pragma: no cover
    bench_app(prog_name="python -m recbench.bench")
