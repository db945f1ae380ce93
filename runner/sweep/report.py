"""``runner-report PATH...``: rebuild the sweep summary files from run directories.

Examples::

    runner-report outputs/sweeps/2025-01-01_12-00-00_ab12cd        # into that sweep dir
    runner-report outputs/runs/*_resnet34_* outputs/runs/*_plain34_* --out cmp/
    runner-report outputs/sweeps/A outputs/sweeps/B --out both/    # two sweeps as one table

Works on sweeps that are still running (their jobs show status running) and on
partly failed ones. Exit codes: 0 written, 2 bad arguments or nothing to read.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from runner.errors import Exit
from runner.sweep.runs import load_sweep


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner-report",
        description=(
            "Write summary.csv, summary.md, curves.png, effects.csv and effects.png for a sweep "
            "directory or any list of run directories."
        ),
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, help="a sweep directory, or run/sweep directories"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=(
            "folder for the files (default: the sweep directory when one is given, else "
            "outputs/reports/<time>)"
        ),
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point (``runner-report``)."""
    args = build_parser().parse_args(argv)
    from runner.sweep.summary import write_sweep_summary

    try:
        sweep = load_sweep(args.paths)
    except ValueError as err:
        print(f"runner-report: error: {err}", file=sys.stderr)
        raise SystemExit(Exit.REFUSED) from None
    out = args.out or sweep.root or default_out_dir()
    result = write_sweep_summary(sweep, out)
    counts: dict[str, int] = {}
    for status in result.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    states = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"{len(result.statuses)} runs ({states}): wrote {result.out_dir / 'summary.md'}")
    return 0


def default_out_dir() -> Path:
    return Path("outputs") / "reports" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


if __name__ == "__main__":
    sys.exit(main())
