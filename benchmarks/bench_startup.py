"""Start-up time of ``runner``: from ``import torch`` done to the first training step.

Runs the real CLI (``runner.cli.main`` with the given overrides, default
``trainer.max_epochs=1`` on digits) in a fresh interpreter and stamps, with
``time.perf_counter`` in that process:

- ``import torch`` (the baseline every PyTorch program pays: not counted);
- ``import runner.cli`` (Hydra, OmegaConf, schemas);
- the Hydra main entered (config composed, logging set up);
- the dataset built, the model built, the run built (:func:`runner.build.build_run`:
  loaders, optimizer, scheduler, callbacks); FLOPs are counted after training, off
  this path;
- the end of the first, second and third training step, the end of epoch 1;
- the end of the run (evaluation, figures, report written).

The budget is **first step ≤ 3 s after ``import torch``**. A second run with
``python -X importtime`` lists the modules imported after torch, heaviest
first, so it says *what* was slow. Stamps are taken by wrapping the runner's
own functions in the child process (the CLI is otherwise untouched).

Usage::

    python benchmarks/bench_startup.py                      # digits, 3 repeats
    python benchmarks/bench_startup.py --repeats 5 -- dataset=synthetic model=resnet18

Prints markdown tables and writes ``benchmarks/results/bench_startup.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_S = 3.0

# Runs in the child: wraps the runner's steps with time stamps, then calls the CLI.
CHILD = r"""
import json, sys, time
def now():
    return (time.perf_counter(), time.process_time())
stamps = {"start": now()}
import torch
stamps["import torch"] = now()
import runner.cli as cli
stamps["import runner.cli"] = now()
import runner.build as build
import runner.train as rt
from runner.callbacks import Callback
stamps["import runner.train"] = now()

def stamp_after(module, name, label):
    fn = getattr(module, name)
    def wrapped(*a, **k):
        out = fn(*a, **k)
        stamps.setdefault(label, now())
        return out
    setattr(module, name, wrapped)

run_job = cli.run_job
def timed_run_job(cfg):
    stamps["hydra main entered"] = now()
    return run_job(cfg)
cli.run_job = timed_run_job
stamp_after(build, "build_data", "dataset built")
stamp_after(build, "build_model", "model built")

class Stamps(Callback):
    def on_fit_start(self, loop):
        stamps["run built"] = now()
    def on_train_batch_end(self, loop, epoch, batch, loss):
        if epoch == 1 and batch < 3:
            stamps[f"step {batch + 1}"] = now()
    def on_epoch_end(self, loop, epoch, row):
        stamps.setdefault(f"epoch {epoch} end", now())
    def on_fit_end(self, loop, status):
        stamps["fit end"] = now()

extra = rt.extra_callbacks
rt.extra_callbacks = lambda *args: [*extra(*args), Stamps()]
sys.argv = ["runner", *json.loads(sys.argv[1])]
try:
    cli.main()
except SystemExit as err:
    if err.code:
        raise
stamps["run finished"] = now()
w0, c0 = stamps["import torch"]
print("STAMPS " + json.dumps({k: (w - w0, c - c0) for k, (w, c) in stamps.items()}))
"""

# The floor: a hand-written loop pays the same `import torch` and, through
# torch.optim's constructor, the same lazy `import torch._dynamo` (~1.4 s CPU).
PLAIN = r"""
import json, time
def now():
    return (time.perf_counter(), time.process_time())
stamps = {"start": now()}
import torch
stamps["import torch"] = now()
from torch import nn
model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * 16, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
stamps["optimizer built"] = now()
x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
loss = nn.functional.cross_entropy(model(x), y)
opt.zero_grad()
loss.backward()
opt.step()
stamps["step 1"] = now()
w0, c0 = stamps["import torch"]
print("STAMPS " + json.dumps({k: (w - w0, c - c0) for k, (w, c) in stamps.items()}))
"""

# Phases reported (label, stamp it ends at); each starts where the previous ended.
PHASES = [
    ("import runner.cli (hydra, schemas)", "import runner.cli"),
    ("import runner.train (pandas, …)", "import runner.train"),
    ("compose config, set up logging", "hydra main entered"),
    ("build dataset", "dataset built"),
    ("build model", "model built"),
    ("build run + callbacks' on_fit_start", "run built"),
    ("first training step", "step 1"),
]


def run_once(
    overrides: list[str], workdir: Path, source: str = "", code: str = CHILD
) -> dict[str, list[float]]:
    """One run in a fresh interpreter: per stamp, (wall, CPU) seconds since ``import torch``.

    ``source``: a checkout to import ``runner`` from instead of the installed one.
    """
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if source:
        env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(overrides)],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("STAMPS ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"runner failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(line[len("STAMPS ") :])


def heaviest_imports(limit: int = 20) -> list[tuple[str, float]]:
    """Top-level modules (not imported by ``import torch`` itself) the runner's path imports,
    with their cumulative import seconds, from ``python -X importtime``."""
    code = (
        "import torch, runner.cli, runner.train, runner.engine, runner.data.digits;"
        "import runner.data.synthetic, runner.build, runner.zoo, runner.data.registry;"
        "from runner.data.prepare import stratified_split;"
        "stratified_split(__import__('numpy').arange(20) % 2, 0.2, 0.2, 0)"
    )
    base = _importtime("import torch")
    full = _importtime(code)
    seen_with_torch = {name for name, _, _ in base}
    rows = [(n, us) for n, us, depth in full if n not in seen_with_torch and depth <= 2]
    rows = [(n, us / 1e6) for n, us in rows if not n.startswith(("encodings", "_"))]
    return sorted(rows, key=lambda r: -r[1])[:limit]


def _importtime(code: str) -> list[tuple[str, int, int]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    )
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((m.group(3), int(m.group(1)), len(m.group(2)) // 2))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes (median taken)")
    parser.add_argument("--no-importtime", action="store_true", help="skip the import profile")
    parser.add_argument("--source", default="", help="import runner from this checkout")
    parser.add_argument("--out", default=str(RESULTS / "bench_startup.csv"), help="CSV path")
    parser.add_argument(
        "overrides", nargs="*", help="runner overrides (default: trainer.max_epochs=1)"
    )
    args = parser.parse_args()
    overrides = [*(args.overrides or ["trainer.max_epochs=1"]), "trainer.progress_bar=false"]
    runs, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # alternate: both see the same load
            plain.append(run_once([], Path(tmp), code=PLAIN))
            stamps = run_once([*overrides, f"hydra.run.dir={tmp}/run{i}"], Path(tmp), args.source)
            runs.append(stamps)
            wall, cpu = stamps["step 1"]
            print(f"run {i + 1}: first step {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    med, floor = medians(runs), medians(plain)
    _print_report(overrides, med, floor)
    if not args.no_importtime:
        print("\n| module imported after torch (by the runner's path) | cumulative s |")
        print("|---|---|")
        for name, seconds in heaviest_imports():
            print(f"| {name} | {seconds:.3f} |")
    lines = ["loop,stamp,wall_s,cpu_s,overrides,load_average"]
    for loop, table in (("runner", med), ("plain", floor)):
        for key, (wall, cpu) in table.items():
            lines.append(
                f'{loop},{key},{wall:.4f},{cpu:.4f},"{" ".join(overrides)}",{load_average()}'
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {out}")


def medians(runs: list[dict[str, list[float]]]) -> dict[str, tuple[float, float]]:
    """Per stamp, the median (wall, CPU) over runs (stamps present in every run)."""
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    return {
        k: (statistics.median(r[k][0] for r in runs), statistics.median(r[k][1] for r in runs))
        for k in keys
    }


def _print_report(
    overrides: list[str], med: dict[str, tuple[float, float]], floor: dict[str, tuple[float, float]]
) -> None:
    print(f"\n`runner {' '.join(overrides)}` — medians, load average {load_average()}")
    print("(CPU = seconds of this process's CPU time: on a busy machine the wall-clock")
    print("figures include waiting for a core; CPU time is close to an idle machine's wall time)\n")
    torch_wall, torch_cpu = (-med["start"][0], -med["start"][1])
    print(f"import torch itself: {torch_wall:.2f} s wall, {torch_cpu:.2f} s CPU (not counted)\n")
    print("| phase | wall s | CPU s | cumulative wall s | cumulative CPU s |")
    print("|---|---|---|---|---|")
    prev = (0.0, 0.0)
    rows = [*PHASES, ("step 2", "step 2"), ("step 3", "step 3")]
    for label, key in rows:
        if key in med:
            w, c = med[key]
            print(f"| {label} | {w - prev[0]:.2f} | {c - prev[1]:.2f} | {w:.2f} | {c:.2f} |")
            prev = (w, c)
    if "epoch 1 end" in med:
        w, c = med["epoch 1 end"]
        print(
            f"| rest of epoch 1 + validation | {w - prev[0]:.2f} | {c - prev[1]:.2f} | "
            f"{w:.2f} | {c:.2f} |"
        )
    if "fit end" in med:
        (w, c), (fw, fc) = med["run finished"], med["fit end"]
        print(
            f"| after training: test, figures, diagnostics, report | {w - fw:.2f} | "
            f"{c - fc:.2f} | {w:.2f} | {c:.2f} |"
        )
    w, c = med["step 1"]
    fw, fc = floor["step 1"]
    verdict = "within" if w <= BUDGET_S else "OVER"
    print(
        f"\nfirst training step after import torch: {w:.2f} s wall ({verdict} the "
        f"{BUDGET_S:.0f} s budget), {c:.2f} s CPU. A hand-written loop (small CNN, Adam) "
        f"needs {fw:.2f} s wall, {fc:.2f} s CPU (of which its optimizer's constructor "
        f"{floor['optimizer built'][1]:.2f} s CPU: torch._dynamo). Whole run "
        f"{med['run finished'][0]:.2f} s wall."
    )


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
