"""Run ``recbench`` and SIGKILL it at an exact point of the record-writing protocol.

    python tests/reliability/_killer.py KIND N POINT -- recbench arguments...

KIND is ``ranks`` or ``json``: which of a record's two files; N: the N-th such write of this
process; POINT: ``partial`` (the process dies with the temp file half written, the file itself
untouched), ``before-rename`` (temp file complete and fsynced, dies before the rename) or
``after`` (dies just after the file is in place: for ``ranks``, before its JSON exists).

The product code is unchanged: only the process is killed, with the real signal, exactly where a
power cut or ``kill -9`` could land, so the test does not depend on timing luck.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> None:
    kind, n, point = argv[0], int(argv[1]), argv[2]
    args = argv[argv.index("--") + 1 :]
    assert kind in ("ranks", "json") and point in ("partial", "before-rename", "after")

    from recbench import results

    original = results.write_bytes_atomic
    real_replace = os.replace
    seen = {"ranks": 0, "json": 0}

    def die() -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def dying_replace(src: str | Path, dst: str | Path) -> None:
        die()

    def patched(path: Path, data: bytes) -> None:
        k = "ranks" if path.name.endswith(".npz") else "json"
        seen[k] += 1
        if k != kind or seen[k] != n:
            return original(path, data)
        print(f"[killer] SIGKILL at {point} of {k} write #{n}: {path.name}", flush=True)
        if point == "partial":
            fd, _ = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.write(fd, data[: len(data) // 2])
            os.fsync(fd)
            die()
        if point == "before-rename":
            os.replace = dying_replace  # type: ignore[assignment]
            try:
                original(path, data)
            finally:
                os.replace = real_replace
        original(path, data)
        die()

    results.write_bytes_atomic = patched  # type: ignore[assignment]
    from recbench.cli import app

    app(args=args, prog_name="recbench")


if __name__ == "__main__":
    main(sys.argv[1:])
