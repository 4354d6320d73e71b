"""Flat memory across runs: a command that trains continues in a fresh process once its memory grew.

TensorFlow keeps about 4 MB of every Keras model a process has built and fitted, whatever is freed
(``keras.backend.clear_session(free_memory=True)`` and ``gc.collect()`` included; measured in
docs/performance.md, tensorflow/tensorflow#61791), so a command that trains many runs grows without
bound: 20 digits runs added ~110 MB, a 200-epoch sweep reached 1 GB. No code in this process can hand
that memory back; a new process can. So, between two runs (every result written, no claim held),
once the resident memory has grown by more than :data:`DEFAULT_LIMIT_MB` since the end of this
process's first run, :func:`check` raises :class:`Recycle`; the command-line entry
(:func:`replication.cli.entry`) then replaces the process with the same command (``os.execv``: same
PID, same terminal, same signals), which skips the finished runs and goes on. Peak memory stays
below the first run's plus the limit, however many runs a command has.

Only the command-line process recycles itself: :func:`enable` is called by the entry point, never
by a library caller (``replication.cli.main`` called from Python, the tests, the API), whose
process must not be replaced. ``$REPLICATE_RECYCLE_MB`` sets the limit; 0 turns recycling off.
What the earlier processes of one command trained travels in ``$REPLICATE_RECYCLED`` (JSON), so
that ``train.json`` still lists every run the command trained and when it started.
"""
from __future__ import annotations

import json
import os
import signal
import sys

__all__ = ["Recycle", "check", "enable", "carried", "restart", "DEFAULT_LIMIT_MB", "LIMIT_ENV", "STATE_ENV"]

DEFAULT_LIMIT_MB = 64.0
LIMIT_ENV = "REPLICATE_RECYCLE_MB"
STATE_ENV = "REPLICATE_RECYCLED"
WAKE_ENV = "REPLICATE_RECYCLE_SIGNALS"

_state = {"enabled": False, "baseline": None, "trained": [], "started": {}, "runs_here": 0}


class Recycle(Exception):
    """Raised between runs when this process should continue in a fresh one (:func:`check`)."""

    def __init__(self, grown_mb: float, runs: int):
        super().__init__(f"memory grew {grown_mb:.0f} MB over {runs} runs")
        self.grown_mb = grown_mb
        self.runs = runs


def limit_mb(environ=os.environ) -> float:
    """The growth limit in MB: ``$REPLICATE_RECYCLE_MB`` (a number ≥ 0; 0 = never), else the default."""
    text = environ.get(LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_LIMIT_MB
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        from .errors import UserError

        raise UserError(f"{LIMIT_ENV}={text!r} is not a number of MB >= 0 (0 turns recycling off)")
    return value


def resident_mb() -> float | None:
    """This process's resident memory in MB (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def enable(environ=os.environ) -> None:
    """Let :func:`check` recycle this process (the command-line entry only); read what earlier
    processes of the same command carried over."""
    limit_mb(environ)  # a bad value is one line before anything runs
    _replay_signals(environ)
    _state.update(enabled=True, baseline=None, trained=[], started={}, runs_here=0)
    raw = environ.pop(STATE_ENV, None)
    if raw:
        try:
            carried_state = json.loads(raw)
            _state["trained"] = [str(s) for s in carried_state["trained"]]
            _state["started"] = {str(k): str(v) for k, v in carried_state["started"].items()}
        except (ValueError, KeyError, AttributeError, TypeError):
            pass  # not ours or damaged: start afresh, which only loses train.json's "trained" list


def carried(experiment: str) -> tuple[set, str | None]:
    """(stems this command's processes trained so far, when its training of ``experiment`` started),
    or (empty, None) when this process is not recycling (a library caller)."""
    return set(_state["trained"]), _state["started"].get(experiment)


def check(experiment: str, trained_stem: str, started_at: str, *, resident=resident_mb) -> None:
    """Called after each finished run (``trained_stem`` of ``experiment``, whose training started at
    ``started_at``; the run's files are written): record it and raise :class:`Recycle` when
    recycling is enabled and memory grew past the limit since this process's first run ended.
    ``runs_done`` = runs this process trained, for the message."""
    if not _state["enabled"]:
        return
    _state["trained"].append(trained_stem)
    _state["started"].setdefault(experiment, started_at)
    _state["runs_here"] += 1
    limit = limit_mb()
    now = resident()
    if limit == 0 or now is None:
        return
    if _state["baseline"] is None:
        _state["baseline"] = now  # after the first run: the one-time costs (imports, data, XLA) are in
        return
    if now - _state["baseline"] > limit:
        raise Recycle(now - _state["baseline"], _state["runs_here"])


def restart(command: str, exc: Recycle, argv=None, environ=os.environ) -> None:
    """Replace this process with the same command, carrying :func:`carried`; returns only when a
    stop was requested before the exec (then the caller stops as usual).

    A Ctrl-C or SIGTERM must never be lost or become a traceback on the way. Both are blocked in
    this (main) thread first: the mask survives the exec, so one arriving while the new process
    imports waits until :func:`replication.stops.handling` has its handler in place. TensorFlow's
    other threads do not block them, and a signal one of them takes just before the exec would
    reach Python's handler too late: so the signal module also writes every signal to a pipe
    (``signal.set_wakeup_fd``) whose reading end the new process inherits and replays (:func:`enable`)."""
    from . import stops

    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    try:
        sys.stderr.write(f"replicate {command}: {exc} (TensorFlow keeps each model's memory); "
                         "continuing in a fresh process\n")
        sys.stdout.flush()
        sys.stderr.flush()
        environ[STATE_ENV] = json.dumps({"trained": _state["trained"], "started": _state["started"]})
        environ[WAKE_ENV] = str(read)
        os.set_inheritable(read, True)
        argv = sys.argv[1:] if argv is None else list(argv)
        if stops.requested() is None:
            os.execv(sys.executable, [sys.executable, "-m", "replication.cli", *argv])
    finally:  # reached only when no exec happened
        signal.set_wakeup_fd(previous)
        environ.pop(WAKE_ENV, None)
        os.close(read)
        os.close(write)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def _replay_signals(environ) -> None:
    """Re-send to this process the stop signals its previous process received during the exec
    (:func:`restart`): they stay pending, blocked, until the stop handler is installed."""
    fd = environ.pop(WAKE_ENV, None)
    if not fd:
        return
    try:
        fd = int(fd)
        os.set_blocking(fd, False)
        received = os.read(fd, 1024)
        os.close(fd)
    except (ValueError, OSError):
        return
    for signum in {signal.SIGINT, signal.SIGTERM} & set(received):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
        os.kill(os.getpid(), signum)
