"""One line per finished unit of work, with elapsed time and ETA (instead of pages of Keras bars)."""
from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    """``75`` -> ``'1m15s'``; ``3700`` -> ``'1h01m'``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts finished units out of ``total`` and prints ``[label k/total] message (elapsed, ETA)``.

    The ETA assumes the remaining units cost what the finished ones did on average; units skipped
    because they were already done (resume) are counted with :meth:`skip` and excluded from it.
    """

    def __init__(self, total: int, label: str, stream=None, clock=time.monotonic):
        self.total = int(total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.skipped = 0

    def skip(self, message: str | None = None, n: int = 1) -> None:
        self.skipped += n
        if message:
            self._emit(f"{message} (already done, skipped)")

    def update(self, message: str = "", n: int = 1) -> None:
        """``n`` more units finished (a unit of work that finishes several at once counts them all)."""
        self.done += n
        self._emit(f"{message} ({self._timing()})")

    def note(self, message: str, eta: bool = False) -> None:
        """A line under the same label that finishes no unit (e.g. a result of units already
        counted); with ``eta`` it carries the elapsed time and ETA like :meth:`update`'s lines."""
        self._emit(f"{message} ({self._timing()})" if eta else message)

    def position(self) -> int:
        """Units finished or skipped so far (the ``k`` of ``[label k/total]``)."""
        return self.done + self.skipped

    def remaining(self) -> int:
        """Units neither finished nor skipped."""
        return self.total - self.position()

    def seconds_per_unit(self) -> float | None:
        """Mean wall time of the units finished in this process (skipped ones excluded); None
        before the first."""
        return (self.clock() - self.start) / self.done if self.done else None

    def prefix(self) -> str:
        """``[label k/total]``, the start of every line."""
        return f"[{self.label} {self.position()}/{self.total}]"

    def _timing(self) -> str:
        elapsed = self.clock() - self.start
        per_unit = self.seconds_per_unit()
        eta = per_unit * self.remaining() if per_unit is not None else 0.0
        return f"elapsed {format_seconds(elapsed)}, ETA {format_seconds(eta)}"

    def _emit(self, text: str) -> None:
        print(f"{self.prefix()} {text}", file=self.stream, flush=True)


def warn(progress: Progress | None, text: str) -> None:
    """A line on the progress stream (stderr), also when progress lines are off (``progress`` None,
    e.g. ``--quiet``): what a rerun recomputes and why must always be said."""
    if progress is not None:
        progress.note(text)
    else:
        print(text, file=sys.stderr, flush=True)
