"""``runner-clean PATH... [--keep best|none] [--dry-run]``: free the disk space that finished
runs' checkpoints take.

Each PATH is a run directory, a sweep folder or any folder holding runs (walked to any
depth). In every run whose status is a result (completed, early_stopped, diverged,
time_limit) and whose lock no job holds, it removes ``checkpoints/last.pt`` (``--keep
best``, the default: predict, export and verify go on working from ``best.pt``; a resume is
refused and says why) or every checkpoint (``--keep none``: metrics, figures and report
stay). A run that is running, interrupted or failed is never touched, nor one whose lock is
held (it is held while cleaning, so no job can start there meanwhile). ``--keep best`` keeps
the ``last.pt`` of a run without ``best.pt`` (trained with ``trainer.save=last``): it holds
that run's only weights. Prints each file and the space freed; ``--dry-run`` only prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.rundir import CHECKPOINTS, EVAL, RESULTS, RunDir

KEEP = ("best", "none")
_NOT_RUNS = {CHECKPOINTS, EVAL, ".hydra"}  # folders inside a run that hold no runs


@dataclass
class Cleaned:
    """What cleaning one run did (or, dry, would do): ``removed`` files, the bytes ``freed``
    (a file with another name left, a hard link, frees nothing), why it was ``skipped``,
    and ``notes``."""

    run: RunDir
    removed: list[Path] = field(default_factory=list)
    freed: int = 0
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


def find_runs(paths: Sequence[str | Path]) -> list[RunDir]:
    """Every run directory at or below ``paths``, each once, in path order."""
    found: dict[Path, RunDir] = {}
    for path in paths:
        for folder, subfolders, _ in os.walk(path):
            run = RunDir(folder)
            if run.is_run():
                found.setdefault(Path(folder).resolve(), run)
            subfolders[:] = sorted(d for d in subfolders if d not in _NOT_RUNS)
    return sorted(found.values(), key=lambda r: str(r.path))


def clean_run(run: RunDir, keep: str = "best", dry_run: bool = False) -> Cleaned:
    """Remove the checkpoints of one finished run (see the module's docstring)."""
    if keep not in KEEP:
        raise ValueError(f"keep={keep!r}; valid: {', '.join(KEEP)}")
    result = Cleaned(run)
    status = run.status
    if status not in RESULTS:
        result.skipped = f"status {status}, not a finished run"
        return result
    with run.hold_if_idle() as idle:
        if not idle:
            result.skipped = "a job holds its lock (.lock): it is running"
            return result
        files = run.checkpoint_files()
        best, last = run.checkpoint("best"), run.checkpoint("last")
        if keep == "best":
            files = [f for f in files if f != best]
            if last in files and not best.exists():
                files.remove(last)
                result.notes.append(
                    "kept last.pt: the run has no best.pt (trainer.save=last), so it holds the "
                    "run's only weights; --keep none removes it"
                )
        result.freed = _bytes_freed(files)
        for file in files:
            if not dry_run:
                file.unlink()
            result.removed.append(file)
    return result


def _bytes_freed(files: list[Path]) -> int:
    """Bytes that removing ``files`` gives back: each inode once, and only when every name
    it has is among ``files``."""
    names: dict[tuple[int, int], list[os.stat_result]] = {}
    for file in files:
        info = file.stat()
        names.setdefault((info.st_dev, info.st_ino), []).append(info)
    return sum(infos[0].st_size for infos in names.values() if len(infos) >= infos[0].st_nlink)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; exit status 0, or 2 when a PATH does not exist."""
    parser = argparse.ArgumentParser(
        prog="runner-clean",
        description="Remove the checkpoints of finished runs (never of a running one).",
    )
    parser.add_argument("paths", nargs="+", help="run directories, sweep folders or outputs/")
    parser.add_argument(
        "--keep",
        choices=KEEP,
        default="best",
        help="best (default): remove last.pt only, predict/export keep working; "
        "none: remove every checkpoint",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be removed")
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not Path(p).is_dir()]
    if missing:
        print(f"runner-clean: error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    runs = find_runs(args.paths)
    verb = "would remove" if args.dry_run else "removed"
    freed, cleaned, skipped = 0, 0, 0
    for run in runs:
        result = clean_run(run, args.keep, args.dry_run)
        if result.skipped:
            skipped += 1
            print(f"skipped {run.path}: {result.skipped}")
            continue
        for note in result.notes:
            print(f"{run.path}: {note}")
        if result.removed:
            cleaned += 1
            freed += result.freed
            listed = ", ".join(f.name for f in result.removed)
            print(f"{run.path}: {verb} {listed} ({_size(result.freed)})")
    total = "would free" if args.dry_run else "freed"
    print(
        f"{total} {_size(freed)} in {cleaned} run(s); {len(runs)} run(s) found, "
        f"{skipped} skipped (not finished, or in use)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
