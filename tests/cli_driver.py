"""Run many ``runner`` command lines in one process (saves the start-up per case).

Usage: python -m tests.cli_driver CASES.json RESULTS.json — CASES is a list of argument
lists; each runs through ``runner.cli.main()`` exactly as the console script does, in its
own working directory, and RESULTS records the exit code and everything written to stderr.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
from pathlib import Path


def run_case(args: list[str], workdir: Path) -> dict:
    from runner.cli import main

    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    sys.argv = ["runner", *args]
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # would reach the user as a raw traceback
            err.write(traceback.format_exc())
            code = 99
    return {"args": args, "code": code, "stderr": err.getvalue(), "workdir": str(workdir)}


def main() -> None:
    cases_path, results_path = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    cases = json.loads(cases_path.read_text())
    results = [run_case(args, results_path.parent / f"case{i}") for i, args in enumerate(cases)]
    results_path.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
