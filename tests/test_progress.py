"""The training progress bar on a terminal, including a pseudo-terminal that reports no
size (harnesses, ``docker exec -t``): tqdm prints nothing at width 0, the runner's bar
falls back to 100 columns."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pty = pytest.importorskip("pty")


def _run_on_a_pty(args: list[str], cwd: Path) -> tuple[int, str]:
    """``runner ARGS`` with stdin/stdout/stderr on a fresh pseudo-terminal of size 0x0."""
    exe = Path(sys.executable).with_name("runner")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "runner"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        os.chdir(cwd)
        env = {**os.environ, "RUNNER_TEST": "1"}
        os.execve(command[0], [*command, *args], env)
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


@pytest.mark.parametrize(
    "setting", [pytest.param("auto", marks=pytest.mark.slow), "true"]
)  # auto: the same bar
def test_progress_bar_shows_on_a_pseudo_terminal_without_a_size(tmp_path, setting):
    args = ["trainer.max_epochs=1", "diagnostics=off", "trainer.num_threads=1",
            f"trainer.progress_bar={setting}", "trainer.log_every_n_steps=1"]  # fmt: skip
    code, text = _run_on_a_pty(args, tmp_path)
    assert code == 0, text[-3000:]
    assert "epoch 1:" in text and "it/s" in text and "/20 [" in text, text[-3000:]


def test_no_progress_bar_when_switched_off(tmp_path):
    code, text = _run_on_a_pty(["trainer.max_epochs=1", "diagnostics=off",
                                "trainer.progress_bar=false"], tmp_path)  # fmt: skip
    assert code == 0, text[-3000:]
    assert "epoch 1:" not in text and "epoch 1/1" in text
