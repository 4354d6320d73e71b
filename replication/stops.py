"""Stop requests: Ctrl-C (SIGINT) and SIGTERM end a command at the next safe point.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the interpreter happens to be,
and under TensorFlow that is often a garbage-collection or weak-reference callback, where the
exception is printed ("Exception ignored in …") and swallowed: the run goes on. SIGTERM (what
``kill`` and schedulers send) ends the process at once. So the commands that train install
:func:`handling`: the handler only records the request (and says so with one ``os.write``, which is
safe inside a signal handler), and the code raises :class:`Stopped` itself at points where nothing
is half written: :func:`check` between Keras batches (:func:`keras_callback`), between synthetic
blocks, before every run. Results already written stay; a run's last checkpoint stays; the partial
epoch is dropped, so a rerun resumes exactly. A second request stops at once (``os._exit``; every
result file is written atomically, so this too leaves nothing half written).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

__all__ = ["Stopped", "check", "exit_code", "handling", "keras_callback", "requested", "reset"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

_requested: int | None = None


class Stopped(KeyboardInterrupt):
    """Raised by :func:`check` once a stop was requested. A ``KeyboardInterrupt``, so that nothing
    that catches ``Exception`` (scikit-learn's ``error_score``, Keras) can swallow it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def exit_code(signum: int) -> int:
    """128 + the signal number, as a shell reports a program the signal ended (130, 143)."""
    return 128 + int(signum)


def describe(signum: int) -> str:
    return _NAMES.get(signum, f"signal {signum}")


def requested() -> int | None:
    """The signal of the pending stop request, or None."""
    return _requested


def reset() -> None:
    global _requested
    _requested = None


def check() -> None:
    """Raise :class:`Stopped` if a stop was requested; call it where stopping loses nothing."""
    if _requested is not None:
        raise Stopped(_requested)


def _handler(signum, _frame):
    global _requested
    if _requested is not None:
        os.write(2, f"\n{describe(signum)} again: stopping now; rerun the same command to resume\n".encode())
        os._exit(exit_code(signum))
    _requested = signum
    again = "Ctrl-C again" if signum == signal.SIGINT else "a second signal"
    os.write(2, f"\n{describe(signum)}: stopping after the current batch ({again} stops at once)\n".encode())


@contextlib.contextmanager
def handling():
    """Within the block, SIGINT and SIGTERM only request a stop (see the module doc); the previous
    handlers and a clear request state are restored on exit. Outside the main thread (where Python
    cannot set handlers) the block runs with the handlers it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    reset()
    for s in SIGNALS:
        signal.signal(s, _handler)
    # A command that continues in a fresh process (replication.recycle) blocked these signals
    # across its exec, so that one arriving while the new process starts waits for this handler.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        reset()


_callback_class = None


def keras_callback():
    """A Keras callback that calls :func:`check` after every batch (training, evaluation and
    prediction; with ``steps_per_execution`` > 1, after every block): the safe points inside
    ``fit``. Not at epoch end: the caller checks after its checkpoint, so that the epoch is kept."""
    global _callback_class
    if _callback_class is None:
        _callback_class = _define_callback()
    return _callback_class()


def _define_callback():
    import keras

    class StopCheck(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            check()

        def on_test_batch_end(self, batch, logs=None):
            check()

        def on_predict_batch_end(self, batch, logs=None):
            check()

    return StopCheck
