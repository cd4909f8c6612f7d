"""CPU workers share the machine's cores, whichever sweep or command started them: each
counts the live CPU workers (a locked file each) and takes its share of torch threads."""

from __future__ import annotations

import multiprocessing as mp
import signal
from pathlib import Path

import cli_helper
import pytest
import torch

from corrgd.run import cores
from corrgd.run.worker import Worker

SPEC = "name: t\ndataset: digits\nnetwork: mlp\nhidden: [8]\nalgorithm: bp\nseed: [0, 1, 2]\n"


def _hold(registry: Path, ready: mp.Event) -> None:  # a worker that registers and waits
    with cores.registered(registry):
        ready.set()
        signal.pause()


def _start_holders(registry: Path, n: int) -> list[mp.Process]:
    ctx = mp.get_context("fork")  # the child only holds a lock
    holders = []
    for _ in range(n):
        ready = ctx.Event()
        process = ctx.Process(target=_hold, args=(registry, ready), daemon=True)
        process.start()
        assert ready.wait(60)
        holders.append(process)
    return holders


def test_live_workers_are_counted_and_dead_ones_forgotten(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(cores, "cores", lambda: 8)
    assert cores.cpu_workers_running(tmp_path) == 0
    assert cores.fair_threads(2, tmp_path) == 4  # two about to start, none running
    holders = _start_holders(tmp_path, 3)
    try:
        assert cores.cpu_workers_running(tmp_path) == 3
        assert cores.fair_threads(1, tmp_path) == 2  # 8 cores among 4 workers
        assert cores.fair_threads(0, tmp_path) == 2  # a registered one: 8 cores among 3
        holders[0].kill()  # SIGKILL: no clean-up ran, the kernel dropped its lock
        holders[0].join()
        assert cores.cpu_workers_running(tmp_path) == 2
        assert len(list(tmp_path.glob("*.lock"))) == 2  # its file is gone too
        with cores.registered(tmp_path):
            assert cores.cpu_workers_running(tmp_path) == 3
        assert cores.cpu_workers_running(tmp_path) == 2
    finally:
        for process in holders:
            process.kill()
            process.join()
    assert cores.fair_threads(7, tmp_path) == 1  # never fewer than one


def test_a_cpu_worker_takes_its_share_before_each_group(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    registry = tmp_path / "registry"
    monkeypatch.setattr(cores, "REGISTRY", registry)
    monkeypatch.setattr(cores, "cores", lambda: 4)
    monkeypatch.setattr("corrgd.run.worker.fair_threads",
                        lambda: cores.fair_threads(0, registry))
    monkeypatch.setattr("corrgd.run.worker.registered", lambda: cores.registered(registry))
    (tmp_path / "t.yaml").write_text(SPEC.replace("seed: [0, 1, 2]", "epochs: 0"))
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    assert cli_helper.cli("sweep", "t.yaml", "--db", url, "--enqueue-only",
                          cwd=tmp_path).exit_code == 0
    holders = _start_holders(registry, 1)
    before = torch.get_num_threads()
    seen: list[int] = []
    try:
        worker = Worker(url, checkpoint_dir=tmp_path / "ck", group_size=1)
        share = worker.share_cores

        def spy() -> None:
            share()
            seen.append(torch.get_num_threads())
        monkeypatch.setattr(worker, "share_cores", spy)
        assert worker.run() == 1
        fixed = Worker(url, checkpoint_dir=tmp_path / "ck", threads=3)
        fixed.share_cores()
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
        for process in holders:
            process.kill()
            process.join()
    assert seen and set(seen) == {2}  # 4 cores: this worker and the one holding a lock


def test_the_dry_run_says_how_many_workers_and_threads(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "REGISTRY", tmp_path / "registry")
    monkeypatch.setattr("corrgd.run.launch.cpu_workers_running",
                        lambda: cores.cpu_workers_running(tmp_path / "registry"))
    monkeypatch.setattr("corrgd.run.launch.fair_threads",
                        lambda n: cores.fair_threads(n, tmp_path / "registry"))
    monkeypatch.setattr("corrgd.run.launch.cores", lambda: 4)
    monkeypatch.setattr(cores, "cores", lambda: 4)
    (tmp_path / "t.yaml").write_text(SPEC)
    holders = _start_holders(tmp_path / "registry", 2)
    try:
        out = cli_helper.cli("sweep", "t.yaml", "--dry-run", "--devices", "cpu",
                             cwd=tmp_path).output
        assert "would start 3 local workers on cpu (1 torch thread each: 4 cores, 2 other " \
            "corrgd CPU workers running here)" in out, out
        out = cli_helper.cli("sweep", "t.yaml", "--dry-run", "--devices", "cpu", "--workers",
                             "1", "--threads", "2", cwd=tmp_path).output
        assert "would start 1 local worker on cpu (2 torch threads each)" in out, out
    finally:
        for process in holders:
            process.kill()
            process.join()
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
