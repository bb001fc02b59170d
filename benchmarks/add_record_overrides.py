"""One-off migration (issue 15): give every committed record its ``overrides``, the fields of its
configuration that differ from the model's defaults, so that reports label it from the record
alone (:mod:`recbench.report.labels`) instead of diffing it against today's defaults.

    python benchmarks/add_record_overrides.py --results results            # every records/ folder under it
    python benchmarks/add_record_overrides.py --results results --dry-run  # say what it would do

Every ``records/`` folder under ``--results`` is migrated (``results/records``,
``results/split-seeds/records``, ``results/issue13-init/records``, ``results/experiments/*/records``
where there are any). A record that already has ``overrides`` is left as it is; any other gets
``overrides`` computed with this code's :func:`recbench.models.base.config_diff` (its stored config
read into the model's current ``Config``), and its JSON is rewritten atomically with nothing else
changed (its key, ranks file and hash stay valid: ``overrides`` is not part of the key). A config
this code cannot read (a field it no longer has) falls back to the report's old comparison, field
by field. The script checks that each record's report label is the same before and after and
prints any that is not; it is idempotent.

Exactness: this is the diff against *today's* defaults, which is what the reports showed for
these records before (they diffed against the code's defaults at report time), so no label
changes. It is not always the diff against the defaults *when the record was made*: every
model's ``Config`` was instantiated at each record's commit (``code.commit``, or the last commit
before ``created`` for records older than that field) and compared with today's. Defaults that
changed since (all in 4b9b31a and e760056, issue 13):

- ``cadncf.init_std``: 1.0 → 0.01 (4b9b31a). The 6 committed revision-1 cadncf records
  (``results/records``, ml-100k and filmtrust) get ``init_std = 1.0`` in their overrides although
  they ran at the then default: ``cadncf[epochs=3,init_std=1.0,revision=1]``, as before.
- ``opeci.embedding_init`` / ``opeci.embedding_std``: added in 4b9b31a (``xavier``, 0.01), default
  ``normal``, 1.0 since e760056. The 3 records of ``results/issue13-init`` (made at 7d8b4d3,
  between the two) get ``{embedding_init: xavier, embedding_std: 0.01}``, ``{embedding_std:
  0.01}`` and ``{}`` besides ``epochs = 2``, where their run-time diffs were ``{}``,
  ``{embedding_init: normal}`` and ``{embedding_init: normal, embedding_std: 1.0}``.
- Fields added since a record was made (``cadncf.gate``, ``opeci*.block``, ``opeci*.embedding_*``
  for records before 4b9b31a) are absent from its config, so absent from its overrides; what
  changed with them shows as the record's revision (``[revision=1]``).

Every other field of every committed record is exact. On a copy of the committed results
(129 records: 66 in ``results/records``, 60 in ``results/split-seeds/records``, 3 in
``results/issue13-init/records``) every record got ``overrides`` and no label changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recbench.atomic import write_bytes_atomic
from recbench.models.base import ConfigError, config_diff, config_from_dict
from recbench.registry import get_model_class
from recbench.report.labels import legacy_overrides, record_label
from recbench.results import Record, read_record


def record_files(results: Path) -> Iterator[Path]:
    """Every record JSON under every ``records/`` folder below ``results``."""
    seen: set[Path] = set()
    for folder in sorted(p for p in results.rglob("records") if p.is_dir()):
        for path in sorted(folder.rglob("*.json")):
            if path not in seen:  # a records/ folder inside another is walked once
                seen.add(path)
                yield path


def overrides_of(rec: Record) -> tuple[dict[str, Any], str]:
    """``(overrides, how)``: this code's config diff of the record, as JSON stores it; ``how``
    says whether the config was read into the current ``Config`` or compared field by field."""
    try:
        cls = get_model_class(rec.data.get("model_ref") or rec["model"])
        cfg = config_from_dict(cls.Config, rec["config"], rec["model"])
    except (ConfigError, TypeError, ValueError) as e:
        return legacy_overrides(rec), f"compared field by field ({e})"
    return json.loads(json.dumps(config_diff(cfg), default=str)), "config_diff"


def migrate(results: Path, dry_run: bool = False) -> dict[str, int]:
    """Add ``overrides`` to the records under ``results`` that lack it; returns counts."""
    counts = {"records": 0, "had_overrides": 0, "added": 0, "field_by_field": 0, "label_changed": 0, "unreadable": 0}
    for path in record_files(results):
        counts["records"] += 1
        try:
            rec = read_record(path, with_ranks=False)
        except ValueError as e:
            counts["unreadable"] += 1
            print(f"skipped (not a valid record): {e}", file=sys.stderr)
            continue
        if isinstance(rec.data.get("overrides"), dict):
            counts["had_overrides"] += 1
            continue
        before = record_label(rec)
        overrides, how = overrides_of(rec)
        if how != "config_diff":
            counts["field_by_field"] += 1
            print(f"{path}: {how}")
        data = json.loads(path.read_text())
        data["overrides"] = overrides
        after = record_label(Record(data=data, path=path))
        if after != before:
            counts["label_changed"] += 1
            print(f"{path}: label {before!r} -> {after!r}")
        counts["added"] += 1
        if not dry_run:
            write_bytes_atomic(path, (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode())
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--results DIR [--dry-run]``."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--results", type=Path, default=Path("results"), help="folder whose records/ folders to migrate")
    ap.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    a = ap.parse_args(argv)
    counts = migrate(a.results, a.dry_run)
    print(("would add" if a.dry_run else "added") + " overrides: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 1 if counts["label_changed"] or counts["unreadable"] else 0


if __name__ == "__main__":
    sys.exit(main())
