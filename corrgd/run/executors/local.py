"""Workers as processes on this machine, one per device."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any

from corrgd.run.executors.base import WorkerFn, WorkerResult, WorkerStopped, with_defaults

log = logging.getLogger(__name__)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds the worker, which gives its runs back on the way (Worker.execute)
    raise SystemExit(128 + signum)


def _child_main(fn: WorkerFn, kwargs: dict[str, Any], conn: Connection) -> None:
    """Entry point of a worker process: run `fn` and send back how it ended."""
    # Ctrl-C in a terminal reaches the whole process group; the parent turns it into a stop
    # request (the `stop` event), so the worker is not interrupted halfway through an epoch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        value = fn(**kwargs)
    except BaseException as e:
        _tell(conn, ("error", (traceback.format_exc(), _picklable(e))))
        if isinstance(e, WorkerStopped):  # the parent tells the user
            conn.close()
            os._exit(1)
        raise
    _tell(conn, ("ok", value))
    conn.close()
    # The worker's work is saved and its result sent: skip Python's shutdown, which after
    # training tears torch's modules down for about 0.4 s while the sweep waits. What of it
    # matters is done here: wait for the worker's own processes, flush logs and streams.
    for child in mp.active_children():
        child.join()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _tell(conn: Connection, message: tuple) -> None:
    """Send the parent how the worker ended; a parent that is gone (killed: the pipe is
    broken) has nobody to tell, and what the worker did is in the database."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.send(message)


def _picklable(e: BaseException) -> BaseException | None:
    """`e` if it can travel to the parent process, else None (its traceback still does)."""
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:
        return None
    return e


class LocalJob:
    """A worker process started by :class:`LocalExecutor`."""

    def __init__(self, process: BaseProcess, conn: Connection, stop: Event, device: str) -> None:
        self.device = device
        self._process = process
        self._conn = conn
        self._stop = stop
        self._stop_requested = False
        self._result: WorkerResult | None = None

    @property
    def job_id(self) -> str:
        return f"local-{self._process.pid}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def state(self) -> str:
        return self._finish().state if self.done() else "RUNNING"

    def done(self) -> bool:
        return self._process.exitcode is not None

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds for the process to end; return whether it has."""
        self._process.join(timeout)
        return self.done()

    def wait(self, timeout: float | None = None) -> WorkerResult:
        if not self.join(timeout):
            raise TimeoutError(f"worker {self.job_id} still running after {timeout} s")
        return self._finish()

    def stop(self) -> None:
        """Ask the worker to stop (sets the `stop` event it was given)."""
        if not self.done():
            self._stop_requested = True
            self._stop.set()

    def cancel(self) -> None:
        """Terminate the worker (SIGTERM: it exits through its `finally` blocks)."""
        if not self.done():
            self._stop_requested = True
            self._process.terminate()

    def kill(self) -> None:
        if not self.done():
            self._stop_requested = True
            self._process.kill()

    def _finish(self) -> WorkerResult:
        if self._result is None:
            try:  # nothing to read (EOFError) when the process died before it could send
                outcome, payload = self._conn.recv() if self._conn.poll() else ("lost", None)
            except EOFError:
                outcome, payload = "lost", None
            code = self._process.exitcode
            if self._stop_requested:
                state = "CANCELLED"
            elif outcome == "ok" and code == 0:
                state = "COMPLETED"
            else:
                state = "FAILED"
            error, exception = payload if outcome == "error" else (None, None)
            self._result = WorkerResult(
                job_id=self.job_id,
                state=state,
                value=payload if outcome == "ok" else None,
                exit_code=code,
                error=error,
                exception=exception,
            )
            self._conn.close()
        return self._result


class LocalExecutor:
    """Run workers as local processes (multiprocessing, spawn context).

    Worker i runs on ``devices[i % len(devices)]``; a worker function that accepts ``device``
    or ``stop`` gets them (``stop`` is a multiprocessing Event, set when asked to stop).
    """

    def __init__(self, devices: Sequence[str] = ("cpu",), *, grace_seconds: float = 30.0) -> None:
        if not devices:
            raise ValueError("LocalExecutor needs at least one device")
        self.devices = list(devices)
        self.grace_seconds = grace_seconds
        self._ctx = mp.get_context("spawn")

    def launch(
        self, fn: WorkerFn, kwargs_per_worker: Sequence[Mapping[str, Any]]
    ) -> list[LocalJob]:
        handles = []
        for i, kwargs in enumerate(kwargs_per_worker):
            device = self.devices[i % len(self.devices)]
            stop = self._ctx.Event()
            full_kwargs = with_defaults(fn, kwargs, device=device, stop=stop)
            receiver, sender = self._ctx.Pipe(duplex=False)
            # not a daemon: workers may start processes of their own (data loaders)
            process = self._ctx.Process(
                target=_child_main, args=(fn, full_kwargs, sender), name=f"corrgd-worker-{i}"
            )
            process.start()
            sender.close()
            handles.append(LocalJob(process, receiver, stop, device))
        return handles

    def wait(self, handles: Sequence[LocalJob]) -> list[WorkerResult]:
        """Wait for all workers; on Ctrl-C stop them cleanly (see :meth:`stop`)."""
        try:
            for handle in handles:
                handle.wait()
        except KeyboardInterrupt:
            log.warning(
                "interrupted: stopping %d workers (Ctrl-C again to terminate)", len(handles)
            )
            return self.stop(handles)
        return [handle.wait() for handle in handles]

    def stop(self, handles: Sequence[LocalJob]) -> list[WorkerResult]:
        """Set every worker's stop event, wait `grace_seconds`, then SIGTERM, then SIGKILL."""
        for handle in handles:
            handle.stop()
        deadline = time.monotonic() + self.grace_seconds
        try:
            for handle in handles:
                handle.join(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            log.warning("interrupted again: terminating workers")
        for handle in handles:
            handle.cancel()
        for handle in handles:
            if not handle.join(10):
                log.warning("worker %s ignored SIGTERM, killing it", handle.job_id)
                handle.kill()
        return [handle.wait() for handle in handles]
