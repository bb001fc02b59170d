"""The README's commands work as written: every ``recbench`` line of its bash blocks that can run
offline on this checkout (no data set to fetch, no placeholder) is run, in a scratch folder where
``results`` is the published results folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEEDS_DATA = ("ml-100k", "filmtrust", "ml-1m", "yelp")


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            cmd = line.split("  #")[0].strip()
            if not cmd.startswith("recbench ") or "..." in cmd or "~" in cmd or "HEAD_IP" in cmd or "/shared/" in cmd:
                continue
            if any(d in cmd for d in NEEDS_DATA) and "--results results" not in cmd:
                continue
            out.append(cmd)
    return out


COMMANDS = readme_commands()


def test_the_readme_has_runnable_commands() -> None:
    assert "recbench run --models itempop,bpr,ncf" in COMMANDS  # the quick start
    assert any(c.startswith("recbench report --results results") for c in COMMANDS)


@pytest.mark.slow
@pytest.mark.parametrize("cmd", COMMANDS)
def test_readme_command_runs(cmd: str, tmp_path: Path) -> None:
    (tmp_path / "results").symlink_to(REPO / "results")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "COLUMNS": "200"}
    if cmd.startswith("recbench report") and "--results" not in cmd:  # reads ./runs: make some
        made = ["recbench", "run", "--models", "itempop"]
        subprocess.run(made, cwd=tmp_path, env=env, check=True, capture_output=True)
    r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"{cmd}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
