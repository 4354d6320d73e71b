"""The two exception types the CLI turns into one line on stderr (no traceback).

:class:`UserError`: bad input, exit code 2. :class:`OutputError`: a result could not be written
(disk full, quota, permissions), exit code 1. Either message must say what is wrong *and* what to do.
"""
import errno

# Out of space: the command was right, the machine was full. Anything else that stops a write
# (EACCES, EROFS, EPERM, EIO, ...) is reported as "cannot write".
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class UserError(Exception):
    """Bad input from a user: unknown name, missing data file, malformed value, unwritable folder."""


class OutputError(Exception):
    """Writing a result failed after the command started (disk full, quota, permission denied,
    read-only file system). Exit code 1, not 2: the command line was right, and rerunning it
    unchanged once the cause is fixed resumes (finished runs/points/sweeps are kept and skipped)."""


def write_failed(path, exc: OSError) -> OutputError:
    """The :class:`OutputError` for ``exc``, raised while writing ``path`` (None: file unknown)."""
    target = path or "output"
    reason = exc.strerror or str(exc)
    rerun = "rerun the same command (finished work is kept and skipped)"
    if exc.errno in DISK_FULL:
        return OutputError(f"disk full while writing {target} ({reason}); free space and {rerun}")
    return OutputError(f"cannot write {target} ({reason}); make its folder writable and {rerun}")
