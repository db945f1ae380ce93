"""Where data is read from and decoded images are cached by default (runner/paths.py,
conf/common/dataset.yaml): ``$RUNNER_DATA`` else a per-user data folder, ``$RUNNER_CACHE``
else the per-user cache; never the package source, never inside the dataset."""

from __future__ import annotations

from pathlib import Path

from runner.paths import first_path
from tests.conftest import ROOT, compose_cfg, only_run_dir, run_cli
from tests.test_datasets import TINY, write_folder

XDG = ("XDG_DATA_HOME", "XDG_CACHE_HOME")


def test_first_path_takes_the_first_candidate_whose_variables_are_set(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("RUNNER_DATA", *XDG):
        monkeypatch.delenv(name, raising=False)
    rule = ("$RUNNER_DATA", "$XDG_DATA_HOME/runner/data", "~/.local/share/runner/data")
    assert first_path(*rule) == str(tmp_path / "home" / ".local/share/runner/data")
    monkeypatch.setenv("XDG_DATA_HOME", "/x/share")
    assert first_path(*rule) == "/x/share/runner/data"
    monkeypatch.setenv("RUNNER_DATA", "rel/data")  # relative stays relative (to the cwd)
    assert first_path(*rule) == "rel/data"
    monkeypatch.setenv("RUNNER_DATA", "")  # empty counts as unset
    assert first_path(*rule) == "/x/share/runner/data"
    assert first_path("${XDG_DATA_HOME}/a") == "/x/share/a"


def test_default_root_and_cache_are_per_user_folders_not_the_checkout(monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for name in ("RUNNER_DATA", "RUNNER_CACHE", *XDG):
        monkeypatch.delenv(name, raising=False)
    for dataset in ("food", "fish", "imagefolder", "cifar10", "mnist", "nusax_senti"):
        cfg = compose_cfg([f"dataset={dataset}"]).dataset
        assert cfg.root == str(home / ".local/share/runner/data")
        assert not Path(cfg.root).is_relative_to(ROOT)
        if "cache" in cfg:  # image folders: their decode cache
            assert cfg.cache_dir == str(home / ".cache/runner")
    assert compose_cfg(["dataset=nusax_senti"]).dataset.path == str(
        home / ".local/share/runner/data/nusax_senti_id"
    )
    monkeypatch.setenv("RUNNER_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("RUNNER_CACHE", str(tmp_path / "c"))
    cfg = compose_cfg(["dataset=food"]).dataset
    assert (cfg.root, cfg.cache_dir) == (str(tmp_path / "d"), str(tmp_path / "c"))


def test_cfg_job_says_where_data_is_read_and_cached(tmp_path):
    """The plain ``runner --cfg job`` prints the rule, readable without resolving."""
    out = run_cli(["--cfg", "job", "dataset=food"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        "root: ${first_path:'$RUNNER_DATA','$XDG_DATA_HOME/runner/data',"
        "'~/.local/share/runner/data'}" in out.stdout
    )
    assert "cache_dir: ${first_path:'$RUNNER_CACHE','$XDG_CACHE_HOME/runner'," in out.stdout


def test_image_folder_run_reads_runner_data_and_caches_in_runner_cache(tmp_path):
    """A run finds ``<$RUNNER_DATA>/<name>``, logs the data root and the decode cache, and
    writes the decoded images to ``$RUNNER_CACHE``, nothing into the data folder."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_folder(data / "shapes", per_class=10, corrupt=False)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    env = {"RUNNER_DATA": str(data), "RUNNER_CACHE": str(cache)}
    args = ["dataset=imagefolder", "dataset.name=shapes", "dataset.image_size=16", *TINY,
            "trainer.max_epochs=1"]  # fmt: skip
    out = run_cli(args, tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    expected = f"data root {data} (path <root>/<name>), decode cache {cache}"
    assert expected in out.stderr
    assert len(list(cache.glob("shapes-16px-3ch-*.pt"))) == 1
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    assert (only_run_dir(tmp_path) / "summary.json").exists()


def test_missing_data_names_the_default_root(tmp_path):
    """With nothing configured, a missing dataset names the per-user folder it looked in."""
    env = {"RUNNER_DATA": "", "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": ""}
    out = run_cli(["dataset=food", *TINY], tmp_path, env=env)
    assert out.returncode == 2
    assert str(tmp_path / "home" / ".local/share/runner/data" / "food_id") in out.stderr
