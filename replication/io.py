"""Results on disk: atomic CSV/JSON writes and the provenance recorded beside every result.

This module and the CLI are the only places that touch the filesystem.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

from .errors import UserError, write_failed

PACKAGES = ("tensorflow", "keras", "scikeras", "scikit-learn", "numpy", "pandas", "jax", "torch")


def check_writable(path) -> Path:
    """Fail early, creating nothing, when results cannot be written under ``path``: the folder, or
    while it does not exist its nearest existing ancestor, must be a folder that takes a new file.
    A :class:`UserError` otherwise. Folders are made by the first write that needs them (a start
    that fails before writing anything leaves no empty folders behind)."""
    path = Path(path)
    try:
        existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        probe = tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise UserError(
            f"cannot write to output folder {str(path)!r} ({exc.strerror or exc}); "
            "choose another with --out"
        ) from None
    return path


def _write_atomic(path, write, binary=False) -> Path:
    """Write ``path`` via temp file + rename, making its folder if needed. Any OSError (disk full,
    quota, permissions, read-only file system) is an :class:`OutputError` naming ``path``; the
    temp file is removed and an older ``path`` is left as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file 0600; results are shared (clusters, repos): honour the umask.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise write_failed(path, exc) from None
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv_atomic(frame, path, float_format=None) -> Path:
    """Write a DataFrame as CSV (no index) via temp file + rename: never a half-written file.
    ``float_format`` (e.g. ``"%.8g"``) keeps large committed CSVs small."""
    return _write_atomic(
        path,
        lambda handle: frame.to_csv(handle, index=False, lineterminator="\n", float_format=float_format),
    )


def write_text_atomic(text: str, path) -> Path:
    return _write_atomic(path, lambda handle: handle.write(text))


def write_json_atomic(obj, path) -> Path:
    return _write_atomic(
        path, lambda handle: (json.dump(obj, handle, indent=2, sort_keys=True, default=str), handle.write("\n"))
    )


def write_npz_atomic(arrays: dict, path) -> Path:
    """Save ``arrays`` (name -> NumPy array) as an uncompressed ``.npz`` via temp file + rename:
    a kill mid-write leaves the previous file (e.g. the last epoch's checkpoint) intact."""
    import numpy as np

    return _write_atomic(path, lambda handle: np.savez(handle, **arrays), binary=True)


def _not_utf8(path, exc: UnicodeDecodeError, todo: str) -> UserError:
    byte = exc.object[exc.start:exc.start + 1].hex()
    return UserError(f"{path} is not UTF-8 text (byte 0x{byte} at position {exc.start}); {todo}")


@contextlib.contextmanager
def _reading(path, todo):
    """Turn what can go wrong reading ``path`` into a one-line :class:`UserError` naming it;
    ``todo`` says what to do about a file that is not UTF-8. The readers below catch their own
    format errors (bad JSON, bad CSV) inside this block."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc, todo) from None
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or exc}); make it a readable file") from None


def _unique_keys(path):
    """A ``json`` object hook refusing a key that appears twice in one object: ``json`` would keep
    the last value silently, and which of the two was meant cannot be known."""
    def hook(pairs):
        obj = dict(pairs)
        if len(obj) < len(pairs):
            keys = [key for key, _ in pairs]
            twice = next(key for i, key in enumerate(keys) if key in keys[:i])
            raise UserError(f"{path}: key {twice!r} appears more than once in one JSON object; keep one and rerun")
        return obj

    return hook


def read_json(path):
    """Load JSON; a malformed, unreadable or non-UTF-8 file, or one with a key twice in one object,
    is a :class:`UserError` naming it."""
    with _reading(path, "save it as UTF-8, or delete it if a command wrote it and rerun that command"):
        with open(path, encoding="utf-8") as handle:
            try:
                return json.load(handle, object_pairs_hook=_unique_keys(path))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                                "fix or delete it") from None


def read_csv(path, **kwargs):
    """``pandas.read_csv(path, **kwargs)``; an empty, malformed, unreadable or non-UTF-8 file is a
    :class:`UserError` naming it (every CSV read here is one a command wrote)."""
    import pandas as pd

    todo = "delete it and rerun the command that writes it"
    with _reading(path, todo):
        try:
            return pd.read_csv(path, **kwargs)
        except pd.errors.EmptyDataError:
            raise UserError(f"{path} is empty; {todo}") from None
        except pd.errors.ParserError as exc:
            raise UserError(f"{path} is not a valid CSV ({exc}); {todo}") from None


def read_text(path) -> str:
    """A UTF-8 text file; a missing, unreadable or undecodable one is a :class:`UserError` naming it."""
    with _reading(path, "save it as UTF-8"):
        return Path(path).read_text(encoding="utf-8")


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def describe_device() -> dict:
    """Backend and the accelerators it sees (empty list = CPU only)."""
    import keras

    backend = keras.backend.backend()
    devices, extra = [], {}
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            devices = [d.name for d in tf.config.list_physical_devices("GPU")]
        elif backend == "jax":
            import jax

            devices = [f"{d} ({d.device_kind})" for d in jax.devices() if d.platform != "cpu"]
            extra["jax_default_matmul_precision"] = jax.config.jax_default_matmul_precision  # float32 or TF32 products
        elif backend == "torch":
            import torch

            devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - provenance must never break a run
        pass
    return {
        "backend": backend,
        "accelerators": devices,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        **extra,
    }


def clock() -> _dt.datetime:
    """The time every timestamp written beside a result is read from (sidecars' ``started_at`` /
    ``finished_at``, manifests' ``written_at``): one place, so that tests can move it on instead of sleeping."""
    return _dt.datetime.now(_dt.timezone.utc)


def now_iso() -> str:
    return clock().isoformat(timespec="seconds")


CODE_PACKAGES = ("replication", "gridsearch")  # the code whose version a result records


# Modules that never change a number a run, grid point or synthetic unit computes: the command
# line, reporting, figures, statistics over finished results, progress text, files and locks.
# Editing them keeps a half-finished run's checkpoint (a CifarNet epoch is ~80 s of CPU here).
NOT_COMPUTING = (
    "replication/cli.py", "replication/commands/", "replication/report.py", "replication/readme.py",
    "replication/plots.py", "replication/mcgill.py", "replication/verdicts.py", "replication/stats.py",
    "replication/results.py", "replication/progress.py", "replication/errors.py", "replication/io.py",
    "replication/stops.py", "replication/claims.py", "replication/ablation.py", "replication/recycle.py",
)


def computing(relative: str) -> bool:
    """Whether the source file ``relative`` (a posix path from the repository root) can change a
    computed number, i.e. is part of the code fingerprint."""
    return not any(relative == part or (part.endswith("/") and relative.startswith(part))
                   for part in NOT_COMPUTING)


def source_fingerprint(root) -> str:
    """sha256 over the relative paths and bytes of the ``.py`` files of :data:`CODE_PACKAGES` under
    ``root`` that compute numbers (:func:`computing`): the same code gives the same value, with or
    without git, and editing reporting or CLI text leaves it as it was."""
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((Path(root) / package).rglob("*.py")):
            if not computing(path.relative_to(root).as_posix()):
                continue
            digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


_CODE = {}


def code_version() -> dict:
    """The code this process runs, taken once (at the first result it writes): the source
    fingerprint, and where it is a git checkout the commit and whether tracked code differed from it."""
    if not _CODE:
        import subprocess

        root = Path(__file__).resolve().parents[1]
        _CODE["source_sha256"] = source_fingerprint(root)
        try:
            def git(*args):
                return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                      timeout=10, check=True).stdout.strip()

            _CODE["commit"] = git("rev-parse", "HEAD")
            _CODE["dirty"] = bool(git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PACKAGES))
        except (OSError, subprocess.SubprocessError):  # not a git checkout, or no git
            _CODE["commit"] = None
    return dict(_CODE)


def provenance() -> dict:
    """What every JSON sidecar records besides the spec: package versions, device, the code's
    version, time."""
    return {"versions": package_versions(), "device": describe_device(), "code": code_version(),
            "written_at": now_iso()}


def digest_file(path) -> dict:
    """``{"rows", "sha256"}`` of a CSV: its data rows (lines after the header) and the sha256 of its
    bytes. Recorded in a unit's sidecar when it finishes and compared on read-back, so a file cut
    short or edited since is recomputed rather than taken as finished."""
    data = Path(path).read_bytes()
    return {"rows": max(0, data.count(b"\n") - 1), "sha256": hashlib.sha256(data).hexdigest()}


def holds_json(path, obj, ignore=()) -> bool:
    """Whether ``path`` already holds ``obj`` as JSON, top-level keys ``ignore`` aside (False if it is
    missing or unreadable). A call that only read finished units back uses it to leave a sidecar
    alone whose only differences would be that call's own times and provenance."""
    try:
        with open(path, encoding="utf-8") as handle:
            old = json.load(handle)
    except (OSError, ValueError):
        return False
    new = json.loads(json.dumps(obj, default=str))
    if not isinstance(old, dict) or not isinstance(new, dict):
        return old == new
    return ({k: v for k, v in old.items() if k not in ignore}
            == {k: v for k, v in new.items() if k not in ignore})
