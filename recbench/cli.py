"""The ``recbench`` command line: thin Typer commands that parse, call a library function and
write. Every command's logic lives in the library so it can be tested without the CLI."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="recbench",
    help="Benchmark top-N recommenders (OPECI and its baselines) under leave-one-out evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
