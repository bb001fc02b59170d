"""One-off migration (issue 14): re-key the committed records of splits whose fingerprint changed
only because their candidate lists are now stored in a total order (key, then item id).

    python benchmarks/migrate_split_fingerprints.py --old-code /tmp/wt-old --results results

``--old-code`` is a checkout of the commit before the change (``git worktree add /tmp/wt-old
4b9b31a``). For each data set with records, the script rebuilds the split with the old code (in a
subprocess) and with this code, and migrates only if the two hold the same training rows (same
order, ratings), the same held-out users and items, and the same *set* of candidates for every
user (only the order inside a list may differ, which no metric reads: a rank counts the
candidates scored at least as high as the held-out item). A record is then rewritten with the new
fingerprint and key (its metrics and ranks are unchanged) and ``split_migrated_from`` set to the
old fingerprint; its old files are removed. Anything else is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from recbench.data import load_split
from recbench.results import Record, iter_records, record_key, write_record
from recbench.runner import LABEL_TAGS

DUMP = (
    """
import sys, numpy as np
from recbench.data import fetch, load_split
fetch(sys.argv[1], source=sys.argv[6])
s = load_split(sys.argv[1], seed=int(sys.argv[2]), validation=sys.argv[3] == "1", n_negatives=int(sys.argv[4]))
arrays = {"train_users": s.train.users, "train_items": s.train.items, "train_ratings": s.train.ratings,
          "test_users": s.test.users, "test_items": s.test.items, "test_candidates": s.test.candidates}
if s.validation is not None:
    arrays.update(valid_users=s.validation.users, valid_items=s.validation.items, """
    """valid_candidates=s.validation.candidates)
np.savez(sys.argv[5], fingerprint=np.array(s.fingerprint), **arrays)
"""
)


def old_split(
    old_code: Path, dataset: str, seed: int, validation: bool, n_negatives: int, source: Path
) -> dict[str, np.ndarray]:
    """The split as the old code builds it, in a fresh cache of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "split.npz"
        env = {**os.environ, "PYTHONPATH": str(old_code), "RECBENCH_HOME": str(Path(tmp) / "home")}
        args = [dataset, str(seed), "1" if validation else "0", str(n_negatives), str(out), str(source)]
        subprocess.run([sys.executable, "-c", DUMP, *args], env=env, check=True, cwd=old_code)
        with np.load(out) as z:
            return {k: z[k] for k in z.files}


def same_content(old: dict[str, np.ndarray], new) -> str | None:
    """None when only the order inside candidate lists differs; else what differs."""
    pairs = [
        ("train_users", new.train.users),
        ("train_items", new.train.items),
        ("train_ratings", new.train.ratings),
        ("test_users", new.test.users),
        ("test_items", new.test.items),
    ]
    held = [("test_candidates", new.test.candidates)]
    if new.validation is not None:
        pairs += [("valid_users", new.validation.users), ("valid_items", new.validation.items)]
        held += [("valid_candidates", new.validation.candidates)]
    for name, arr in pairs:
        if name not in old or not np.array_equal(old[name], arr):
            return name
    for name, arr in held:
        if (
            name not in old
            or not np.array_equal(np.sort(old[name], axis=1), np.sort(arr, axis=1))
            or not np.array_equal(old[name][:, 0], arr[:, 0])
        ):
            return name
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-code", type=Path, required=True)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder of the data sets' local copies")
    a = ap.parse_args()
    records = list(iter_records(a.results))
    specs = {
        (
            r["dataset"],
            r["split"],
            r["split_info"]["seed"],
            r["split_info"]["validation"],
            r["split_info"]["n_negatives"],
        )
        for r in records
    }
    mapping: dict[str, str] = {}
    for ds, fp, seed, val, neg in sorted(specs):
        new = load_split(ds, seed=seed, validation=val, n_negatives=neg)
        if new.fingerprint == fp:
            continue
        old = old_split(a.old_code, ds, seed, val, neg, (a.data / ds).resolve())
        if str(old["fingerprint"]) != fp:
            print(f"{ds} seed {seed}: the old code rebuilds {old['fingerprint']}, the records say {fp}: not migrated")
            continue
        diff = same_content(old, new)
        if diff is not None:
            print(f"{ds} seed {seed}: {diff} differs between {fp} and {new.fingerprint}: not migrated")
            continue
        moved = int((old["test_candidates"] != new.test.candidates).any(1).sum())
        print(
            f"{ds} seed {seed} validation {val}: {fp} -> {new.fingerprint} "
            f"(same content; {moved} test list(s) in another order)"
        )
        mapping[fp] = new.fingerprint
    n = 0
    for rec in records:
        new_fp = mapping.get(rec["split"])
        if new_fp is None:
            continue
        d = dict(rec.data)
        old_paths = [rec.path, rec.path.with_name(d["ranks_file"])] if d.get("ranks_file") else [rec.path]
        d["split_migrated_from"] = d["split"]
        d["split"] = new_fp
        ident = {
            k: d[k] for k in ("dataset", "split", "model", "config", "seed", "device", "eval_every", "early_stopping")
        }
        ident["tags"] = {k: v for k, v in (d.get("tags") or {}).items() if k not in LABEL_TAGS}
        if "revision" in d:
            ident = {"revision": d["revision"], **ident}
        old_key, d["key"] = d["key"], record_key(ident)
        assert record_key({**ident, "split": d["split_migrated_from"]}) == old_key, f"{rec.path}: key does not rebuild"
        write_record(a.results, Record(data=d, users=rec.users, ranks=rec.ranks))
        for p in old_paths:
            p.unlink()
        n += 1
    print(json.dumps({"migrated_records": n, "mapping": mapping}, indent=1))


if __name__ == "__main__":
    main()
