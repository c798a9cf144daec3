"""``workers = N``: N share-nothing gateway processes on one port, and their supervisor.

Each worker is ``redis-gateway serve`` in a process of its own that binds the port with
``SO_REUSEPORT`` (the kernel spreads new connections over the workers) and builds its own
backends, token store and limits: nothing is shared but Redis. The supervisor only
starts, watches and signals them:

- a worker tells it it listens by writing to a pipe; the banner is printed once, when
  every worker listens;
- a worker that dies is replaced. One that dies soon after it started (before it listens,
  or within ``SETTLE_SECONDS``) is replaced after a back-off that doubles each time; after
  ``MAX_QUICK_DEATHS`` such deaths in a row the supervisor gives up, stops the others and
  exits 1 saying so, instead of restarting a broken configuration forever;
- SIGTERM and SIGINT are forwarded as SIGTERM (each worker drains, ``lifecycle.py``), SIGHUP
  as SIGHUP (each reloads); workers run in their own process group, so a Ctrl-C in a
  terminal reaches them only through the supervisor, once;
- workers die with the supervisor (``PR_SET_PDEATHSIG``), even if it is killed with
  SIGKILL; so does the embedded Redis, which the supervisor starts once for all workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("redis_gateway.supervisor")

# A worker that dies within this many seconds of its start died "at once".
SETTLE_SECONDS = 5.0
MAX_QUICK_DEATHS = 5
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
# After SIGTERM, how much longer than drain_timeout a worker may take before SIGKILL.
STOP_GRACE = 10.0

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def prepare_worker(sig: int = signal.SIGTERM) -> None:  # pragma: no cover - in the child
    """In a worker between fork and exec: be sent ``sig`` when the supervisor dies."""
    # Until its server sets a handler, a SIGHUP (sent to the whole group, say) must not
    # end it (the default); the supervisor passes its own on once the worker listens.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").prctl(1, sig)  # PR_SET_PDEATHSIG


@dataclass
class Worker:
    slot: int
    process: subprocess.Popen[bytes]
    ready_fd: int
    started: float
    listening: bool = False
    # A SIGHUP came while it was starting: passed on once it listens (it may have read
    # the configuration before the change).
    reload_pending: bool = False


@dataclass
class Supervisor:
    """``command(fd)``: the argv of a worker that writes to ``fd`` once it listens."""

    command: Callable[[int], list[str]]
    count: int
    on_listening: Callable[[], None]
    drain_timeout: float
    # Told the pid of every worker that exits (the metrics forget its live gauges).
    on_exit: Callable[[int], None] | None = None
    workers: dict[int, Worker] = field(default_factory=dict)
    _quick_deaths: int = 0
    _restart_at: dict[int, float] = field(default_factory=dict)
    _stopping_since: float | None = None
    _announced: bool = False
    _failed: str = ""

    def run(self) -> int:
        """Until every worker has stopped; the exit status for the whole gateway."""
        self._selector = selectors.DefaultSelector()
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        handlers = {sig: signal.signal(sig, _wake_only)
                    for sig in (*_FORWARDED, signal.SIGCHLD)}
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        try:
            for slot in range(self.count):
                self._start(slot)
            while self.workers or (self._restart_at and self._stopping_since is None):
                events = self._selector.select(self._timeout())
                for key, _ in events:
                    if key.fileobj is wake_r:
                        with contextlib.suppress(BlockingIOError):
                            for number in wake_r.recv(256):
                                self._on_signal(number)
                    else:
                        self._on_ready_pipe(key.data)
                self._reap()
                self._restart_due()
                self._kill_late()
        finally:
            for worker in self.workers.values():  # only after an unexpected error
                worker.process.kill()
                worker.process.wait()
            signal.set_wakeup_fd(previous)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self._selector.close()
            wake_r.close()
            wake_w.close()
        if self._failed:
            print(f"redis-gateway: {self._failed}", file=sys.stderr, flush=True)
            return 1
        return 0

    # workers ---------------------------------------------------------------------------
    def _start(self, slot: int) -> None:
        ready_r, ready_w = os.pipe()
        try:
            process = subprocess.Popen(
                self.command(ready_w), pass_fds=(ready_w,), stdin=subprocess.DEVNULL,
                preexec_fn=prepare_worker, process_group=0)
        finally:
            os.close(ready_w)
        worker = Worker(slot, process, ready_r, time.monotonic())
        self.workers[slot] = worker
        self._selector.register(ready_r, selectors.EVENT_READ, worker)
        log.debug("worker %d started (pid %d)", slot, process.pid)

    def _on_ready_pipe(self, worker: Worker) -> None:
        data = os.read(worker.ready_fd, 64)
        if data:
            worker.listening = True
            if worker.reload_pending:
                worker.reload_pending = False
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGHUP)
            if not self._announced and len(self.workers) == self.count and \
                    all(w.listening for w in self.workers.values()):
                self._announced = True
                self.on_listening()
        else:  # the worker closed it (or exited)
            self._selector.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _reap(self) -> None:
        for slot, worker in list(self.workers.items()):
            status = worker.process.poll()
            if status is None:
                continue
            del self.workers[slot]
            if self.on_exit is not None:
                self.on_exit(worker.process.pid)
            if worker.ready_fd >= 0:
                self._selector.unregister(worker.ready_fd)
                os.close(worker.ready_fd)
            if self._stopping_since is not None:
                if status != 0:
                    log.warning("worker %d (pid %d) stopped with %s", slot,
                                worker.process.pid, _describe(status))
                continue
            self._replace(worker, status)

    def _replace(self, worker: Worker, status: int) -> None:
        lived = time.monotonic() - worker.started
        what = f"worker {worker.slot} (pid {worker.process.pid}) exited with " \
               f"{_describe(status)} after {lived:.1f} s"
        if worker.listening and lived >= SETTLE_SECONDS:
            self._quick_deaths = 0
            log.error("%s; starting a new one", what)
            self._start(worker.slot)
            return
        self._quick_deaths += 1
        if self._quick_deaths >= MAX_QUICK_DEATHS:
            self._failed = (f"{what}: {self._quick_deaths} workers in a row died right after "
                            "starting, so the supervisor gives up (the reason is in the "
                            "worker's messages above); stopping the other workers")
            self._stop()
            return
        delay = min(FIRST_BACKOFF * 2 ** (self._quick_deaths - 1), MAX_BACKOFF)
        log.error("%s; starting a new one in %.1f s", what, delay)
        self._restart_at[worker.slot] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self._restart_at.items()):
            if when <= now and self._stopping_since is None:
                del self._restart_at[slot]
                self._start(slot)

    def _timeout(self) -> float | None:
        waits = [when - time.monotonic() for when in self._restart_at.values()]
        if self._stopping_since is not None:
            waits.append(self._stopping_since + self.drain_timeout + STOP_GRACE
                         - time.monotonic())
        return max(min(waits), 0.0) if waits else None

    # signals ---------------------------------------------------------------------------
    def _on_signal(self, number: int) -> None:
        if number in (signal.SIGTERM, signal.SIGINT):
            self._stop()
        elif number == signal.SIGHUP:
            log.info("SIGHUP: every worker reloads its configuration")
            for worker in self.workers.values():
                if worker.listening:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.send_signal(signal.SIGHUP)
                else:
                    worker.reload_pending = True

    def _stop(self) -> None:
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()
            self._restart_at.clear()
        self._send(signal.SIGTERM)

    def _send(self, sig: int) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(sig)

    def _kill_late(self) -> None:
        if self._stopping_since is None:
            return
        if time.monotonic() > self._stopping_since + self.drain_timeout + STOP_GRACE:
            for worker in self.workers.values():
                log.error("worker %d (pid %d) did not stop within drain_timeout + %g s: "
                          "killed", worker.slot, worker.process.pid, STOP_GRACE)
                worker.process.kill()


def _wake_only(number: int, frame: object) -> None:
    """The C-level handler writes the signal's number to the wakeup fd; nothing else."""


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"
