"""``replicate``: the command-line front door.

Each subcommand lives in ``replication/commands/<name>.py`` with ``add_parser(subparsers)`` (which
sets ``func`` via ``set_defaults``) and ``run(args) -> int``. Bad input raises
:class:`replication.errors.UserError` (or an argparse error): one line on stderr, exit code 2; a
result that cannot be written (disk full, permissions) raises :class:`replication.errors.OutputError`:
one line, exit code 1. No traceback either way; see :func:`main` for every exit code.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from . import recycle, stops
from .errors import DISK_FULL, OutputError, UserError, write_failed

# Order = order in `replicate --help`.
COMMANDS = ("demo", "synthetic", "experiments", "train", "gridsearch", "ablation", "report", "migrate")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (what is wrong + where to look), exit 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _quiet_tensorflow():
    # TensorFlow's C++ start-up chatter is not for our users; set before it is imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# Subcommands that run Keras; the others (experiments, report) never import TensorFlow.
KERAS_COMMANDS = ("demo", "synthetic", "train", "gridsearch", "ablation")


# KERAS_BACKEND values Keras 3 knows, and the module each needs.
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy",
                   "openvino": "openvino"}


def check_backend(environ=os.environ) -> None:
    """A UserError naming the problem when ``$KERAS_BACKEND`` is no Keras backend (a typo such as
    ``jxa``) or one whose package is not installed (``torch`` here): Keras would raise a
    ValueError or ImportError traceback at import."""
    name = environ.get("KERAS_BACKEND")
    if not name:
        return
    if name not in BACKEND_MODULES:
        raise UserError(f"KERAS_BACKEND={name!r} is not a Keras backend; use tensorflow or jax "
                        "(both installed by requirements.txt), or unset it")
    if importlib.util.find_spec(BACKEND_MODULES[name]) is None:
        raise UserError(f"KERAS_BACKEND={name} needs the {BACKEND_MODULES[name]} package, which is not installed; "
                        "use tensorflow or jax (both installed by requirements.txt)")


def _import_keras_silently():
    """Import Keras (and TensorFlow) with file descriptor 2 pointed at /dev/null: TensorFlow's C++
    start-up lines ("Could not find cuda drivers…") are written before its log level applies and
    would bury our one-line errors and progress output."""
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


DISTRIBUTION = "adam-amsgrad-replication"  # setup.cfg's name


def version_line() -> str:
    """``replicate 0.1.0 (code 1a2b3c4d5e6f)``: the installed package's version (importlib.metadata;
    the source's ``__version__`` when it is not installed) and the short sha256 of the code that
    computes numbers (:func:`replication.io.source_fingerprint`, recorded in every result's sidecar)."""
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    from . import __version__
    from .io import source_fingerprint

    try:
        installed = version(DISTRIBUTION)
    except PackageNotFoundError:
        installed = __version__
    return f"replicate {installed} (code {source_fingerprint(Path(__file__).resolve().parents[1])[:12]})"


class _Version(argparse.Action):
    """``--version``: computed when asked for, not each time the parser is built."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="replicate",
        description="Replicate Adam vs AMSGrad (Reddi et al., ICLR 2018) as the McGill study did.",
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the package version and the fingerprint of the code that computes numbers, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"replication.commands.{name}").add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Run one subcommand; the exit code. 0: done; 1: a result could not be written (disk full,
    permissions: :class:`OutputError`); 2: bad input (:class:`UserError`, usage); 130: Ctrl-C;
    143: SIGTERM; 141: stdout or stderr was closed by its reader (`replicate experiments | head -1`).
    Commands that train stop at the next safe point (:mod:`replication.stops`)."""
    try:
        try:
            return _main(argv)
        except KeyboardInterrupt:  # Ctrl-C before a command started (while parsing its arguments)
            sys.stderr.write("replicate: interrupted\n")
            return 130
        finally:
            # Output to a pipe is buffered: flush it here, so that a reader that went away shows
            # up as the BrokenPipeError handled below, not at interpreter exit ("Exception ignored").
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader of stdout or stderr is gone (`| head -1`): nobody is left to tell, so end
        # quietly. Both descriptors point at /dev/null from here, so that the interpreter's own
        # final flush has somewhere to go. 141 = 128 + SIGPIPE, the status of a program the
        # signal ended: `set -o pipefail` scripts see the output was cut short, as with `yes | head`.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        os.close(devnull)
        return 141


def _main(argv) -> int:
    _quiet_tensorflow()
    with stops.handling():  # from here Ctrl-C and SIGTERM only request a stop
        args = build_parser().parse_args(argv)
        if args.command in KERAS_COMMANDS and stops.requested() is None:
            return _keras_command(args)
        signum = stops.requested()
    if signum is not None:  # during start-up
        return _stopped(args.command, signum)
    return _run(args)  # no Keras: Python's own Ctrl-C (KeyboardInterrupt) stops it anywhere


def _keras_command(args) -> int:
    """Run a command that trains, within :func:`stops.handling`: it stops at a safe point."""
    try:
        check_backend()
    except UserError as exc:
        sys.stderr.write(f"replicate {args.command}: error: {exc}\n")
        return 2
    _import_keras_silently()
    code = _run(args)
    signum = stops.requested()
    if signum is not None and code == 0:  # the request came after the last safe point
        return _stopped(args.command, signum)
    return code


def _stopped(command, signum) -> int:
    sys.stderr.write(f"replicate {command}: stopped ({stops.describe(signum)}); "
                     "rerun the same command to resume\n")
    return stops.exit_code(signum)


def _run(args) -> int:
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"replicate {args.command}: error: {exc}\n")
        return 2
    except OutputError as exc:
        sys.stderr.write(f"replicate {args.command}: error: {exc}\n")
        return 1
    except OSError as exc:
        # A full disk can stop any write, not only ours (Keras's and matplotlib's caches, TF's
        # temp files): still one line. Other OSErrors are bugs and keep their traceback.
        if exc.errno not in DISK_FULL:
            raise
        sys.stderr.write(f"replicate {args.command}: error: {write_failed(exc.filename, exc)}\n")
        return 1
    except stops.Stopped as exc:
        return _stopped(args.command, exc.signum)
    except recycle.Recycle as exc:  # only where entry() enabled it: the process is replaced
        recycle.restart(args.command, exc)  # returns when a stop was requested first
        return _stopped(args.command, stops.requested())
    except KeyboardInterrupt:
        sys.stderr.write(f"replicate {args.command}: interrupted; rerun the same command to resume\n")
        return 130


def entry() -> int:
    """The ``replicate`` program (console script and ``python -m replication.cli``): :func:`main`,
    in a process that may replace itself with the same command between two runs to keep its memory
    flat (:mod:`replication.recycle`). Library callers call :func:`main`, which never does."""
    try:
        recycle.enable()
    except UserError as exc:
        sys.stderr.write(f"replicate: error: {exc}\n")
        return 2
    return main()


if __name__ == "__main__":
    sys.exit(entry())
