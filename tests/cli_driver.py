"""Run many ``runner`` command lines in one process (saves the start-up per case).

Usage: python -m tests.cli_driver CASES.json RESULTS.json — CASES is a list of cases, each
an argument list or ``{"args": [...], "watch": [folder, ...]}``; each runs through
``runner.cli.main()`` exactly as the console script does, in its own working directory,
and RESULTS records the exit code, everything written to stderr, the seconds it took and,
for ``watch``, the SHA-256 of every file under each folder after the case ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) → its SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_case(args: list[str], workdir: Path) -> dict:
    from runner.cli import main

    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    sys.argv = ["runner", *args]
    err = io.StringIO()
    code = 0
    started = time.perf_counter()
    with contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # would reach the user as a raw traceback
            err.write(traceback.format_exc())
            code = 99
    return {
        "args": args,
        "code": code,
        "stderr": err.getvalue(),
        "workdir": str(workdir),
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    cases_path, results_path = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    cases = json.loads(cases_path.read_text())
    results = []
    for i, case in enumerate(cases):
        spec = case if isinstance(case, dict) else {"args": case}
        result = run_case(spec["args"], results_path.parent / f"case{i}")
        result["hashes"] = {w: tree_hashes(Path(w)) for w in spec.get("watch", [])}
        results.append(result)
    results_path.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
