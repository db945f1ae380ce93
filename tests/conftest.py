"""Shared test helpers: compose the real configs, shrink them, run in tmp_path."""

from __future__ import annotations

import os

# Before anything imports torch: idle OpenMP threads sleep instead of spinning. Tests run
# side by side with other jobs on few cores, where spinning threads starve the working ones.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import atexit
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import runner.cli  # noqa: F401  (registers resolvers and schemas)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"

# The default data root and decode cache (conf/common/dataset.yaml) point into a scratch
# folder of this session: tests never read the user's data folders or write their cache.
_SCRATCH = Path(tempfile.mkdtemp(prefix="runner-tests-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
os.environ["RUNNER_DATA"] = str(_SCRATCH / "data")
os.environ["RUNNER_CACHE"] = str(_SCRATCH / "cache")

# Small, fast settings every test starts from.
FAST = ["trainer.num_threads=2", "trainer.progress_bar=false"]


def compose_cfg(overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` (as the CLI would) and set run_dir."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*FAST, *overrides])
    if run_dir is not None:
        cfg.run_dir = str(run_dir)
    return cfg


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None):
    """Run the installed ``runner`` console script in ``cwd``; return the CompletedProcess."""
    full_env = {**os.environ, "RUNNER_TEST": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    exe = Path(sys.executable).with_name("runner")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "runner"]
    return subprocess.run(
        [*cmd, *args, "trainer.progress_bar=false"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def only_run_dir(root: Path) -> Path:
    """The single run directory under ``root/outputs/runs``."""
    runs = sorted((root / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def digits_cfg(tmp_path):
    def make(*overrides: str) -> DictConfig:
        return compose_cfg(list(overrides), tmp_path / "run")

    return make
