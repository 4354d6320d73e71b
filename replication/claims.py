"""Several processes on one ``--out``: claims on units of work and locks on merged files (issue 26 §3).

Any number of processes may run the same command into one output folder (a second terminal, a
scheduler's array job): they split the work between them and never lose or mix results.

* A unit of work (one training run, one grid fold, one synthetic sweep) is *claimed* before it is
  computed: an exclusive ``flock`` on a lock file beside its result (``<result>.lock``). The kernel
  drops the lock when its process ends, however it ends (kill -9 included), so a dead claimant
  blocks no one: the next process takes its unit over, resuming from what it left (a checkpoint,
  the folds it stored). :func:`share` runs a list of units this way: a unit claimed by another
  process is skipped for the next unclaimed one; the skipped ones are waited for at the end,
  checked again, and computed only if their claimant stopped without finishing them.
* A file merged from several processes' results (``history.csv``, ``gridsearch.csv`` and its
  sidecars, ``trajectories.csv`` ...) is read, merged and rewritten inside :func:`merging`, under a
  lock of its own (``<file>.lock``): no process merges into a copy another has replaced meanwhile.

A holder removes its lock file before releasing it; after locking, a claimant checks that the path
still names the file it locked (else it was removed meanwhile and it tries again), so a removed file
is never taken for the lock. A file left by a killed process is taken over, and removed, by the
next. ``flock`` needs a file system whose locks work between the processes sharing it: a local
disk, or NFSv4 (Lustre, GPFS: with locking enabled). No Keras here.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path

from . import stops
from .errors import OutputError

__all__ = ["Claim", "try_claim", "wait_claim", "claim_all", "merging", "lock_path", "owner", "share"]

# Pauses between tries of a waiting claim: from the first to the longest (a stop request is
# checked between tries, so a waiting command still stops at once).
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 1.0
sleep = time.sleep  # how a waiting claim pauses: tests replace it to wait without the wall clock
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)

_held: set[str] = set()  # lock files this process holds (a second claim of one would wait for ever)


class Claim:
    """Exclusive locks held on one or more lock files; :meth:`release` (or the end of a ``with``
    block) removes the files and releases the locks."""

    def __init__(self, held):
        self._held = list(held)  # [(path, fd, folders the claim made, deepest first)]

    @property
    def paths(self) -> list[Path]:
        return [entry[0] for entry in self._held]

    def release(self) -> None:
        while self._held:
            path, fd, made = self._held.pop()
            try:
                os.unlink(path)  # while still locked: see the module doc
            except OSError:
                pass  # already gone, or a folder made read-only meanwhile: a stale file is harmless
            os.close(fd)
            _held.discard(str(path))
            # Folders made for the lock file alone go with it (a stop before the first result leaves
            # no empty folder); one holding anything else, e.g. another claim's file, stays.
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:
                    break

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def lock_path(path) -> Path:
    """The lock file beside ``path``: ``<path>.lock``."""
    path = Path(path)
    return path.with_name(f"{path.name}.lock")


def _lock_failed(path, exc: OSError) -> OutputError:
    return OutputError(f"cannot lock {path} ({exc.strerror or exc}): the output folder's file system must support "
                       "file locks (a local disk, NFSv4) and be writable; choose another --out or fix it and rerun")


def _open_locked(path: Path):
    """``(descriptor, folders made)`` of ``path`` locked by this call, or None while another holds it."""
    if str(path) in _held:
        return None  # held by this very process: busy too
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    try:
        for _ in range(100):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:
                continue  # a releasing claim removed the folder (empty) just as it was made: again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in _BUSY:
                    return None
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # its holder removed it as we opened it: lock the file now there
        else:
            raise OSError(errno.ENOENT, "the lock file keeps disappearing")
        os.ftruncate(fd, 0)  # say who holds it (owner())
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except OSError as exc:
        raise _lock_failed(path, exc) from None
    _held.add(str(path))
    return fd, made


def try_claim(path) -> Claim | None:
    """Claim the lock file ``path`` now, or None while another process (or this one) holds it."""
    return claim_all([path])


def claim_all(paths, *, wait=False, on_wait=None) -> Claim | None:
    """Claim every lock file of ``paths`` (taken in sorted order, so waiters never deadlock).
    Without ``wait``: all of them or none (None while any is held elsewhere). With ``wait``: wait
    for each in turn; ``on_wait(owner)`` is called once, before the first wait. A stop request
    (:mod:`replication.stops`) ends a wait with :class:`~replication.stops.Stopped`."""
    held, told = [], False
    try:
        for path in sorted({Path(p) for p in paths}):
            if str(path) in _held and wait:
                raise RuntimeError(f"{path} is already claimed by this process")
            locked, pause = _open_locked(path), FIRST_PAUSE
            while locked is None and wait:
                if not told and on_wait is not None:
                    told = True
                    on_wait(owner(path))
                stops.check()
                sleep(pause)
                pause = min(2 * pause, LONGEST_PAUSE)
                locked = _open_locked(path)
            if locked is None:
                Claim(held).release()
                return None
            held.append((path, *locked))
    except BaseException:
        Claim(held).release()
        raise
    return Claim(held)


def wait_claim(path, on_wait=None) -> Claim:
    """Claim the lock file ``path``, waiting while another process holds it."""
    return claim_all([path], wait=True, on_wait=on_wait)


def merging(path) -> Claim:
    """``with merging(path):`` read, merge and rewrite ``path`` under its lock (``<path>.lock``),
    waiting for another process's merge to end: the merge must read ``path`` inside the block."""
    return wait_claim(lock_path(path))


def owner(path) -> str:
    """Who holds the lock file ``path``, as its holder wrote it: ``"process 123 on host"``."""
    try:
        pid, host = Path(path).read_text(encoding="utf-8").split()
        return f"process {int(pid)} on {host}"
    except (OSError, ValueError):
        return "another process"


def share(units, *, lock_paths, is_done, work, say=None, found_done=None, label=str):
    """Run ``work(unit)`` for each of ``units`` not done, each under a claim on ``lock_paths(unit)``
    (a list of lock files); return the units this process computed.

    A unit claimed elsewhere is skipped for the next; the skipped ones are waited for at the end.
    Once a unit is claimed, ``is_done(unit)`` is asked again (another process may have finished it
    since it was planned): then ``found_done(unit)`` is called and nothing computed. ``say(text)``
    gets one line per skip and per wait; ``label(unit)`` names a unit in them."""
    say = say or (lambda text: None)
    computed, skipped = [], []
    for unit in units:
        claim = claim_all(lock_paths(unit))
        if claim is None:
            say(f"{label(unit)}: claimed by {owner(sorted(lock_paths(unit))[0])}; going on with the next")
            skipped.append(unit)
            continue
        with claim:
            _run_claimed(unit, is_done(unit), work, found_done, computed)
    for unit in skipped:
        def waiting(who, unit=unit):
            say(f"waiting for {label(unit)} ({who} claims it)")

        with claim_all(lock_paths(unit), wait=True, on_wait=waiting):
            done = is_done(unit)
            if not done:
                say(f"{label(unit)}: its claimant stopped before finishing it; computing it here")
            _run_claimed(unit, done, work, found_done, computed)
    return computed


def _run_claimed(unit, done, work, found_done, computed):
    if done:
        if found_done is not None:
            found_done(unit)
        return
    work(unit)
    computed.append(unit)
