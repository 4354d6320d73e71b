"""The command-line front door across subcommands: a closed stdout/stderr pipe is quiet."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _closed_pipe_run(argv, closed):
    """Run ``python -m replication.cli ARGV`` with the read end of its stdout or stderr pipe
    closed before it writes (as `| head -c 0` would); returns (returncode, the other stream)."""
    proc = subprocess.Popen([sys.executable, "-m", "replication.cli", *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    getattr(proc, closed).close()
    other = (proc.stderr if closed == "stdout" else proc.stdout).read().decode()
    proc.wait(timeout=120)
    return proc.returncode, other


@pytest.mark.parametrize("argv", [["experiments"], ["experiments", "--json"]])
def test_closed_stdout_exits_141_quietly(argv):
    """`replicate experiments | head -1`: no traceback, no "Exception ignored ... BrokenPipeError"
    at interpreter exit; exit status 141 = 128 + SIGPIPE, as a program killed by the signal."""
    code, err = _closed_pipe_run(argv, "stdout")
    assert (code, err) == (141, "")


def test_closed_stdout_after_help_is_quiet():
    # argparse itself ignores a failed write of --help (0); whatever is left buffered fails at the
    # CLI's flush (141). Either way: nothing on stderr.
    code, err = _closed_pipe_run(["--help"], "stdout")
    assert code in (0, 141) and err == ""


def test_closed_stderr_exits_141_quietly():
    """The one-line error itself cannot be written: still no crash, same status."""
    code, out = _closed_pipe_run(["experiments", "no-such-experiment"], "stderr")
    assert (code, out) == (141, "")
