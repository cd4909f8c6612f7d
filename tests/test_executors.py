"""Executors: local worker processes, and a SLURM job array on the test cluster.

The SLURM tests need the single-node cluster of tests/services/slurm.sh (`start` it once);
they find it through $SLURM_CONF or /tmp/corrgd-slurm/slurm.conf and are skipped otherwise.
The worker functions below stand in for corrgd.run.worker.WorkerTask: module-level, so that
spawned processes and SLURM jobs can import them (the SLURM fixture puts tests/ on PYTHONPATH).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event
from pathlib import Path

import cloudpickle
import pytest
from slurm_cluster import slurm_conf_or_skip

from corrgd.run.executors import (
    LocalExecutor,
    SlurmExecutor,
    WorkerJob,
    make_executor,
    parse_time_minutes,
    slurm_job_states,
)
from corrgd.run.executors.base import with_defaults
from corrgd.run.executors.slurm import _parse_states

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


# --- worker functions (run in other processes) -----------------------------------------


def report(x: int, device: str) -> int:
    """Returns 10 * x plus the device's index (cpu: 0, cuda:1: 1)."""
    return 10 * x + (int(device.split(":")[1]) if ":" in device else 0)


def no_device(x: int) -> int:
    return x


def fail(code: int) -> int:
    if code == 0:
        raise ValueError("worker failed")
    os._exit(code)


def until_stopped(workdir: str, name: str, stop: Event) -> int:
    """Counts until asked to stop, like a worker finishing its epoch before stopping."""
    Path(workdir, f"started-{name}").touch()
    count = 0
    while not stop.wait(0.05):
        count += 1
    Path(workdir, f"stopped-{name}").touch()
    return count


def ignores_stop(workdir: str) -> int:
    Path(workdir, "started").touch()
    try:
        while True:
            time.sleep(0.05)
    finally:  # SIGTERM unwinds through here: the worker gets to give its run back
        Path(workdir, "cleaned-up").touch()


def write_task_id(outdir: str, device: str) -> int:
    task = os.environ["SLURM_ARRAY_TASK_ID"]
    Path(outdir, f"task-{task}").write_text(f"{task} {device}")
    return int(task)


def run_until_killed(workdir: str) -> int:
    """Runs until cancelled, or until told to die by SIGKILL (as the OOM killer would)."""
    task = os.environ["SLURM_ARRAY_TASK_ID"]
    Path(workdir, f"started-{task}").touch()
    while True:
        if Path(workdir, f"die-{task}").exists():
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.1)


def loop_on_first_start(workdir: str) -> int:
    """Loops forever on its first start; returns the start count on the next one."""
    counter = Path(workdir, "starts")
    starts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(starts))
    Path(workdir, f"start-{starts}").write_text(str(time.time()))
    while starts == 1:
        time.sleep(0.1)
    return starts


def write_marker(path: str) -> None:
    Path(path).write_text(str(time.time()))


# --- pure helpers -------------------------------------------------------------------


def test_parse_time_minutes() -> None:
    assert parse_time_minutes(30) == 30
    assert parse_time_minutes(0.5) == 1
    assert parse_time_minutes("90") == 90
    assert parse_time_minutes("10:30") == 11  # MM:SS, rounded up
    assert parse_time_minutes("04:00:00") == 240
    assert parse_time_minutes("1-00") == 1440
    assert parse_time_minutes("1-02:30:00") == 1590
    assert parse_time_minutes("25:00:00") == 1500  # the first unit takes any size
    for bad in ("0", "-5", "inf", "1e400", "1-inf", "1:60", "1-99:99:99", "2-24", "400-00",
                "1:2:3:4", "", float("inf"), float("nan"), True):
        with pytest.raises(ValueError):
            parse_time_minutes(bad)


def test_parse_states_expands_arrays_and_keeps_last_record() -> None:
    text = "7_[0-2,5%4]|PENDING\n8|CANCELLED by 0\n9|REQUEUED\n9|COMPLETED\n"
    assert _parse_states(text) == {
        "7_0": "PENDING",
        "7_1": "PENDING",
        "7_2": "PENDING",
        "7_5": "PENDING",
        "8": "CANCELLED",
        "9": "COMPLETED",
    }


def test_with_defaults_only_fills_accepted_unset_kwargs() -> None:
    assert with_defaults(report, {"x": 1}, device="cpu", stop=None) == {"x": 1, "device": "cpu"}
    assert with_defaults(report, {"x": 1, "device": "cuda:1"}, device="cpu") == {
        "x": 1,
        "device": "cuda:1",
    }
    assert with_defaults(no_device, {"x": 1}, device="cpu") == {"x": 1}


def test_make_executor() -> None:
    assert isinstance(make_executor("local", devices=["cpu"]), LocalExecutor)
    slurm = make_executor("slurm", folder="logs", time="00:10:00", gpus_per_job=1)
    assert isinstance(slurm, SlurmExecutor)
    assert slurm.time_minutes == 10
    assert slurm.signal_delay_s == 90
    with pytest.raises(ValueError):
        make_executor("kubernetes")  # type: ignore[arg-type]


def test_worker_job_calls_hook_then_resubmits_itself() -> None:
    released: list[str] = []

    class Worker:
        def __call__(self, x: int) -> int:
            return x

        def release(self) -> None:
            released.append("attribute")

    job = WorkerJob(Worker())
    assert job({"x": 3}) == 3
    delayed = job.checkpoint({"x": 3})
    assert released == ["attribute"]
    assert delayed.function is job and delayed.args == ({"x": 3},)

    WorkerJob(Worker(), on_preempt=lambda: released.append("hook")).checkpoint({"x": 3})
    assert released == ["attribute", "hook"]  # an explicit hook wins over `release`


class StatefulWorker:
    """Like corrgd.run.worker.WorkerTask: holds live, unpicklable state while it runs."""

    def __init__(self) -> None:
        self.connection: threading.Lock | None = None

    def __call__(self) -> int:
        self.connection = threading.Lock()
        return 1


def test_worker_job_requeues_the_function_as_submitted() -> None:
    job = WorkerJob(StatefulWorker())
    assert job({}) == 1 and job.fn.connection is not None  # type: ignore[attr-defined]
    requeued = cloudpickle.loads(cloudpickle.dumps(job.checkpoint({})))
    assert isinstance(requeued.function, WorkerJob)
    assert requeued.function.fn.connection is None  # starts afresh


# --- local executor -------------------------------------------------------------------


def test_local_runs_one_process_per_worker_and_collects_values() -> None:
    executor = LocalExecutor(devices=["cuda:0", "cuda:1"])
    handles = executor.launch(report, [{"x": 1}, {"x": 2}, {"x": 3}])
    assert len({handle.pid for handle in handles}) == 3
    results = executor.wait(handles)
    assert [r.state for r in results] == ["COMPLETED"] * 3
    assert [r.value for r in results] == [10, 21, 30]  # devices handed out round-robin
    assert [r.exit_code for r in results] == [0, 0, 0]


def test_local_reports_failures_and_exit_codes() -> None:
    executor = LocalExecutor()
    raised, exited = executor.wait(executor.launch(fail, [{"code": 0}, {"code": 3}]))
    assert (raised.state, raised.exit_code) == ("FAILED", 1)
    assert raised.error is not None and "ValueError: worker failed" in raised.error
    assert (exited.state, exited.exit_code, exited.error) == ("FAILED", 3, None)


def test_local_stop_asks_first_then_terminates(tmp_path: Path) -> None:
    executor = LocalExecutor(grace_seconds=1.0)
    polite = executor.launch(until_stopped, [{"workdir": str(tmp_path), "name": "a"}])
    stubborn = executor.launch(ignores_stop, [{"workdir": str(tmp_path)}])
    eventually(lambda: (tmp_path / "started-a").exists(), 30, "worker a to start")
    eventually(lambda: (tmp_path / "started").exists(), 30, "stubborn worker to start")

    stopped, terminated = executor.stop(polite + stubborn)

    assert stopped.state == "CANCELLED" and stopped.exit_code == 0
    assert isinstance(stopped.value, int)  # it returned normally
    assert (tmp_path / "stopped-a").exists()
    assert terminated.state == "CANCELLED" and terminated.exit_code == 128 + signal.SIGTERM
    assert (tmp_path / "cleaned-up").exists()


CTRL_C_SCRIPT = """
import json, signal, sys
# Ctrl-C raises KeyboardInterrupt, as in a terminal; a shell without job control starts
# background jobs (such as a test run with &) with SIGINT ignored, which Python keeps
signal.signal(signal.SIGINT, signal.default_int_handler)
from corrgd.run.executors import LocalExecutor
from test_executors import until_stopped
executor = LocalExecutor(devices=["cpu", "cpu"], grace_seconds=20)
kwargs = [{"workdir": sys.argv[1], "name": name} for name in "ab"]
results = executor.wait(executor.launch(until_stopped, kwargs))
print(json.dumps([[r.state, r.exit_code, isinstance(r.value, int)] for r in results]))
"""


def test_ctrl_c_stops_local_workers_cleanly(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), str(REPO_DIR)]))
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell job
    )
    try:
        started = [tmp_path / "started-a", tmp_path / "started-b"]
        eventually(lambda: all(p.exists() for p in started), 60, "both workers to start")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # say who is still there, and what they did
            ps = subprocess.run(["ps", "-o", "pid,stat,etime,args", "-g", str(proc.pid)],
                                capture_output=True, text=True).stdout
            files = sorted(p.name for p in tmp_path.iterdir())
            pytest.fail(f"still running 30 s after Ctrl-C; files {files}; processes:\n{ps}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    assert json.loads(out.strip().splitlines()[-1]) == [["CANCELLED", 0, True]] * 2
    assert (tmp_path / "stopped-a").exists() and (tmp_path / "stopped-b").exists()


# --- SLURM (tests/services/slurm.sh start) --------------------------------------------


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A reachable SLURM cluster; yields a folder for submitit's logs."""
    conf = slurm_conf_or_skip()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", conf)
        # the jobs unpickle the worker functions of this module
        path = [str(TESTS_DIR), str(REPO_DIR), os.environ.get("PYTHONPATH", "")]
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
        yield tmp_path_factory.mktemp("slurm-logs")


@pytest.mark.services
def test_slurm_array_runs_each_task(slurm: Path, tmp_path: Path) -> None:
    executor = SlurmExecutor(slurm, time=5, array_parallelism=3)
    handles = executor.launch(write_task_id, [{"outdir": str(tmp_path)}] * 3)
    array_id = handles[0].job_id.split("_")[0]
    assert [h.job_id for h in handles] == [f"{array_id}_{i}" for i in range(3)]

    results = [h.wait(timeout=90) for h in handles]

    assert [(r.state, r.value) for r in results] == [("COMPLETED", i) for i in range(3)]
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        f"task-{i}": f"{i} cpu" for i in range(3)
    }
    ids = [h.job_id for h in handles]
    # accounting lags a little behind the jobs
    eventually(lambda: set(slurm_job_states(ids).values()) == {"COMPLETED"}, 30, "sacct: COMPLETED")
    assert slurm_job_states([array_id]) == {array_id: "COMPLETED"}


@pytest.mark.services
def test_slurm_cancelled_and_killed_jobs_show_their_state(slurm: Path, tmp_path: Path) -> None:
    executor = SlurmExecutor(slurm, time=5)
    cancelled, killed = executor.launch(run_until_killed, [{"workdir": str(tmp_path)}] * 2)
    eventually(
        lambda: all((tmp_path / f"started-{i}").exists() for i in (0, 1)), 60, "jobs to start"
    )

    cancelled.cancel()  # scancel
    (tmp_path / "die-1").touch()  # the worker process dies without writing a result

    assert cancelled.wait(timeout=60).state == "CANCELLED"
    assert killed.wait(timeout=60).state == "FAILED"
    assert slurm_job_states([cancelled.job_id, killed.job_id, "999999"]) == {
        cancelled.job_id: "CANCELLED",
        killed.job_id: "FAILED",
        "999999": "UNKNOWN",
    }


@pytest.mark.services
@pytest.mark.parametrize("signalled_by", ["preemption", "time_limit"])
def test_slurm_signalled_worker_releases_and_is_requeued(
    slurm: Path, tmp_path: Path, signalled_by: str
) -> None:
    marker = tmp_path / "released"
    # with a 1 minute limit SLURM sends the time-limit signal (USR2) within seconds: it may
    # come up to a minute earlier than the --signal delay asks
    executor = SlurmExecutor(
        slurm,
        time=1 if signalled_by == "time_limit" else 10,
        on_preempt=functools.partial(write_marker, str(marker)),
    )
    started = time.time()
    [handle] = executor.launch(loop_on_first_start, [{"workdir": str(tmp_path)}])
    eventually((tmp_path / "start-1").exists, 60, "first start")
    if signalled_by == "preemption":
        handle.job._interrupt()  # SIGTERM, then USR2 (scancel --signal), as preemption does

    result = handle.wait(timeout=90)

    assert (result.state, result.value) == ("COMPLETED", 2)  # the second start finished
    assert started < float(marker.read_text()) < float((tmp_path / "start-2").read_text())
    history = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "--format=State", "-j", handle.job_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert history[0] == "REQUEUED"


def test_a_worker_whose_parent_is_gone_ends_without_a_traceback() -> None:
    """`corrgd sweep` killed (kill -9): its local workers finish their runs, then find the
    pipe to it broken when they say how they ended; nobody is left to tell."""
    import multiprocessing as mp

    from corrgd.run.executors.local import _tell

    reader, writer = mp.Pipe(duplex=False)
    reader.close()
    _tell(writer, ("ok", 1))  # no BrokenPipeError
    writer.close()
