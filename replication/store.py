"""One store for every resumable unit of work (a training run, a grid point or fold, a synthetic
sweep): its identity, the manifest that says its files are intact, and the rule that a call which
computed nothing rewrites nothing. No Keras here (only :func:`keras_backend` imports it, lazily), so
``report`` and the Python API verify results without it.

Identity (schema 2). A unit's id hashes an explicit dict of the fields that decide its numbers; a
field at its default stays out of the dict, so units recorded before the field existed keep their
ids (:func:`identity`). Schema 2 adds the Keras backend (:func:`keras_backend`) to a training run's
identity, left out for ``tensorflow``: every run trained under TensorFlow keeps its id, and a run
trained under JAX is never read back as TensorFlow's (their numbers differ in the last bits, and on
a GPU by more). Records that say no ``schema`` are schema 1 (everything written before it); a
schema-1 run whose provenance names another backend than TensorFlow has an id without its backend
and is migrated by :func:`migrate_runs` (``replicate migrate``): new id, files renamed, sidecar and
``train.json`` rewritten, file contents (and so ``history.csv``) unchanged.

Manifest. When a unit finishes, its sidecar records ``{"rows", "sha256"}`` of each file it wrote
(:func:`manifest`); every read (``train``, ``gridsearch``, ``synthetic``, ``report``) compares the
files with it (:func:`check_manifest`, :func:`check_digest`), so a file cut short or edited is
recomputed, or left out of the report, never taken as the unit's result. A grid point's record is
one JSON file written in one rename: it is validated field by field (:mod:`gridsearch.store`), and
the search's assembled outputs carry the manifest (``gridsearch.json``'s ``files``).

Nothing computed, nothing rewritten. Assembled files (``history.csv``, ``gridsearch.csv``,
``alpha_search.csv``, ...) are written only when their bytes change (:func:`write_csv`,
:func:`write_json`), and a call's sidecar only when it computed something or the sidecar would say
something else besides the call's own times and provenance (:func:`write_sidecar`): rerunning a
finished command leaves every file as it was, inode and mtime included.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import io

SCHEMA = 2  # the identity schema this code writes; records without "schema" are schema 1
DEFAULT_BACKEND = "tensorflow"  # left out of an identity, so schema-1 TensorFlow ids stay valid


# -- identity ------------------------------------------------------------------------------------
def keras_backend() -> str:
    """The Keras backend this process computes under (``keras.backend.backend()``): part of a
    training run's identity. Tests monkeypatch this function to stand for another backend."""
    import keras

    return keras.backend.backend()


def identity(fields: dict, defaults: dict) -> dict:
    """``fields`` without the keys whose value equals their entry in ``defaults``: a field added to
    an identity after units were recorded stays out at its default, so their ids do not change."""
    return {k: v for k, v in fields.items() if not (k in defaults and v == defaults[k])}


def identity_hash(fields: dict, length: int = 10, algorithm: str = "sha256") -> str:
    """The hex id of an identity dict: ``algorithm`` over its sorted-keys JSON (``default=str``), cut to
    ``length``. A sidecar's stored config (its JSON round trip) hashes to the same id."""
    payload = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.new(algorithm, payload.encode()).hexdigest()[:length]


def schema_of(record) -> int:
    """The identity schema a record (a parsed sidecar) was written under: 1 when it says none."""
    value = record.get("schema", 1) if isinstance(record, dict) else 1
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def provenance_backend(record) -> str | None:
    """The backend a record's provenance says computed it, or None where it records none."""
    device = ((record.get("provenance") or {}) if isinstance(record, dict) else {}).get("device") or {}
    return device.get("backend") if isinstance(device, dict) else None


def run_backend(sidecar) -> str:
    """The backend of a training run's sidecar: its identity's (schema 2), else its provenance's."""
    config = sidecar.get("config") if isinstance(sidecar, dict) else None
    if schema_of(sidecar) >= 2 and isinstance(config, dict):
        return config.get("backend", DEFAULT_BACKEND)
    return provenance_backend(sidecar) or DEFAULT_BACKEND


def needs_migration(sidecar) -> bool:
    """Whether a run sidecar's id predates the backend in the identity and its backend is not the
    default: a schema-1 run trained under JAX (say), whose id a JAX process no longer computes."""
    return schema_of(sidecar) < 2 and run_backend(sidecar) != DEFAULT_BACKEND


def _device_backend(record) -> str | None:
    """The backend a record's own ``device`` entry names (grid-search and synthetic sidecars keep
    the device at the top, not under ``provenance``), or None."""
    device = record.get("device") if isinstance(record, dict) else None
    return device.get("backend") if isinstance(device, dict) else None


def _read_record(json_path):
    """A sidecar's parsed JSON, or None when it is missing or unreadable (nothing to mix with yet)."""
    try:
        return json.loads(Path(json_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _mixed(json_path, found, backend, what) -> str | None:
    """The one-line refusal when ``found`` (backends of a folder's results) holds another than ``backend``."""
    other = sorted(set(found) - {backend})
    if not other:
        return None
    return (f"{Path(json_path).parent} holds {what} under the {other[0]} backend, and this process "
            f"computes under {backend}: rerun with KERAS_BACKEND={other[0]}, or use another --out")


def sweeps_backend_conflict(json_path, backend: str) -> str | None:
    """Why computing synthetic sweeps under ``backend`` into the folder of ``json_path``
    (``trajectories.json``) would mix two Keras backends' sweeps in one ``trajectories.csv`` (which
    has no backend column, as ``history.csv`` has none): each sweep's record names the backend that
    computed it (its ``device``). None when they all match, or there is no readable record yet."""
    meta = _read_record(json_path)
    sweeps = meta.get("sweeps") if isinstance(meta, dict) else None
    if not isinstance(sweeps, dict):
        return None
    fallback = _device_backend(meta) or DEFAULT_BACKEND
    found = {_device_backend(entry) or fallback for entry in sweeps.values()}
    return _mixed(json_path, found, backend, "sweeps computed")


def search_backend_conflict(json_path, backend: str) -> str | None:
    """Why a grid search under ``backend`` into the folder of ``json_path`` (``gridsearch.json``)
    would merge its rows into a ``gridsearch.csv`` (no backend column) another Keras backend scored:
    the sidecar names the backend of the search that wrote it (``device.backend``). None when it
    matches, or there is no readable sidecar yet."""
    meta = _read_record(json_path)
    if meta is None:
        return None
    return _mixed(json_path, {_device_backend(meta) or DEFAULT_BACKEND}, backend, "a grid search scored")


# -- manifest ------------------------------------------------------------------------------------
def manifest(paths) -> dict:
    """``{file name: {"rows", "sha256"}}`` of ``paths`` (:func:`replication.io.digest_file`), as a
    unit's sidecar records them when it finishes."""
    return {Path(path).name: io.digest_file(path) for path in paths}


def check_digest(got: dict, want, what: str, unit: str = "its sidecar") -> str | None:
    """Why ``got`` (``{"rows", "sha256"}`` of some data) is not ``want`` (what ``unit`` recorded), or
    None: the row count first (the likelier damage, a file cut short), then the bytes."""
    if not isinstance(want, dict):
        return f"{unit} records no checksum of {what}"
    if got["rows"] != want.get("rows"):
        return f"{what} has {got['rows']} rows, {unit} says {want.get('rows')}"
    if got["sha256"] != want.get("sha256"):
        return f"{what} differs from the file {unit} records (sha256)"
    return None


def check_manifest(files, paths, name=lambda path: Path(path).name, unit: str = "its sidecar") -> str | None:
    """Why the files ``paths`` are not those a ``files`` manifest (:func:`manifest`) records, or None
    if every one is there with its row count and sha256. ``name(path)`` is how a line names a file."""
    for path in map(Path, paths):
        want = files.get(path.name) if isinstance(files, dict) else None
        if not isinstance(want, dict):
            return f"{unit} records no checksum of {name(path)}"
        if not path.exists():
            return f"{name(path)} is missing"
        why = check_digest(io.digest_file(path), want, name(path), unit)
        if why:
            return why
    return None


# -- nothing computed, nothing rewritten ---------------------------------------------------------
def csv_text(frame, float_format=None) -> str:
    """The text :func:`write_csv` writes for ``frame`` (that of :func:`replication.io.write_csv_atomic`)."""
    return frame.to_csv(index=False, lineterminator="\n", float_format=float_format)


def _holds(path, data: bytes) -> bool:
    try:
        return Path(path).read_bytes() == data
    except OSError:
        return False


def write_csv(frame, path, float_format=None) -> bool:
    """Write ``frame`` to ``path`` atomically unless it holds those bytes already; whether it wrote."""
    return write_text(csv_text(frame, float_format), path)


def write_text(text: str, path) -> bool:
    """Write ``text`` to ``path`` atomically unless it holds it already; whether it wrote."""
    if _holds(path, text.encode("utf-8")):
        return False
    io.write_text_atomic(text, path)
    return True


def json_text(obj) -> str:
    """The text :func:`replication.io.write_json_atomic` writes for ``obj``."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def write_json(obj, path) -> bool:
    """Write ``obj`` as JSON to ``path`` atomically unless it holds that text already; whether it wrote."""
    return write_text(json_text(obj), path)


def write_sidecar(obj, path, *, computed: bool, ignore=()) -> bool:
    """Write a call's sidecar ``obj`` to ``path`` when the call ``computed`` a unit, or when the file
    would say something else than ``obj`` besides the keys ``ignore`` (the call's own times,
    argv and provenance); whether it wrote. A call that only read finished units back would
    otherwise overwrite the times and provenance of the calls that computed them."""
    if not computed and io.holds_json(path, obj, ignore=ignore):
        return False
    io.write_json_atomic(obj, path)
    return True


# -- migrations ----------------------------------------------------------------------------------
def _run_files(runs_dir: Path, stem: str):
    return [runs_dir / f"{stem}{suffix}" for suffix in (".csv", ".iterations.csv", ".json")]


def migrate_run(runs_dir, stem: str) -> str | None:
    """Migrate the schema-1 run ``stem`` of ``runs_dir`` whose sidecar names a backend other than
    TensorFlow to schema 2: its config gains ``backend``, its id and stem follow, its two CSVs are
    renamed (their bytes unchanged, so the manifest keeps its checksums under the new names) and its
    sidecar is written under the new stem, the old one removed last. Returns the new stem, or None
    when the run needs no migration (a missing or unreadable sidecar included)."""
    runs_dir = Path(runs_dir)
    old_csv, old_it, old_json = _run_files(runs_dir, stem)
    try:
        sidecar = json.loads(old_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("config"), dict) or not needs_migration(sidecar):
        return None
    config = {**sidecar["config"], "backend": run_backend(sidecar)}
    run_id = identity_hash(config)
    new_stem = stem[: -len(str(sidecar.get("run_id")))] + run_id if stem.endswith(str(sidecar.get("run_id"))) \
        else f"{stem}-{run_id}"
    new_csv, new_it, new_json = _run_files(runs_dir, new_stem)
    files = sidecar.get("files")
    if isinstance(files, dict):  # the same bytes under the new names
        files = {new.name: files.get(old.name) for old, new in ((old_csv, new_csv), (old_it, new_it))}
    migrated = {**sidecar, "config": config, "run_id": run_id, "schema": SCHEMA,
                **({"files": files} if files is not None else {}),
                "migrated_from": {"schema": schema_of(sidecar), "run_id": sidecar.get("run_id")}}
    for old, new in ((old_csv, new_csv), (old_it, new_it)):
        if old.exists():
            old.replace(new)
    io.write_json_atomic(migrated, new_json)  # the new sidecar marks the migrated run finished
    old_json.unlink(missing_ok=True)
    return new_stem


def migrate_folder(exp_dir, say=print) -> dict:
    """Migrate every run of ``exp_dir/runs`` that needs it (:func:`migrate_run`) and rename them in
    its ``train.json`` (``run_files``, ``trained``, ``skipped``); ``history.csv``/``iterations.csv``
    hold no stem and are left as they are. Returns ``{old stem: new stem}``; ``say`` gets one line."""
    exp_dir = Path(exp_dir)
    runs_dir = exp_dir / "runs"
    renamed = {}
    for path in sorted(runs_dir.glob("*.json")) if runs_dir.is_dir() else ():
        new = migrate_run(runs_dir, path.stem)
        if new:
            renamed[path.stem] = new
    meta_path = exp_dir / "train.json"
    if renamed and meta_path.is_file():
        meta = io.read_json(meta_path)
        for key in ("run_files", "trained", "skipped"):
            if isinstance(meta.get(key), list):
                meta[key] = [renamed.get(stem, stem) for stem in meta[key]]
        io.write_json_atomic(meta, meta_path)
    if renamed:
        backends = sorted({run_backend(io.read_json(runs_dir / f"{new}.json")) for new in renamed.values()})
        say(f"{exp_dir}: {len(renamed)} run(s) trained under {', '.join(backends)} migrated to identity schema "
            f"{SCHEMA} (the backend in the run id)")
    return renamed


def migrate(out, say=print) -> dict:
    """:func:`migrate_folder` on every experiment folder under ``out`` (``<out>/*/runs`` and one level
    deeper, as ``results/tf-cpu/<experiment>``); ``{folder: {old stem: new stem}}`` of those changed."""
    out = Path(out)
    folders = sorted({p.parent.parent for p in (*out.glob("*/runs/*.json"), *out.glob("*/*/runs/*.json"))})
    changed = {}
    for folder in folders:
        renamed = migrate_folder(folder, say=say)
        if renamed:
            changed[folder] = renamed
    return changed


# -- synthetic units -----------------------------------------------------------------------------
# A synthetic unit is one run (α, seed) of a sweep; trajectories.csv holds them all and
# trajectories.json records each sweep's config and each run's digest (its manifest), keyed by
# run_key. Here, Keras-free, so that ``report`` verifies the CSV as ``synthetic`` reads it back.
def rows_of(config, frame):
    """The rows of ``frame`` that belong to ``config`` (its sweep, optimizer, α and seeds). Floats
    match to 8 significant digits, as the CSV stores them (β2 = 1/(1 + C²) is not exact there)."""
    import numpy as np

    if frame is None or frame.empty:
        return frame.iloc[0:0] if frame is not None else None

    def close(column, value):
        return np.isclose(frame[column].to_numpy(dtype=float), value, rtol=1e-7, atol=0.0)

    rate = np.zeros(len(frame), dtype=bool)
    for lr in config.learning_rates:
        rate |= close("learning_rate", lr)
    mask = (
        (frame.setting == config.setting) & (frame.optimizer == config.optimizer) & rate
        & (frame.schedule == config.schedule) & (frame.bias_correction == config.bias_correction)
        & close("beta_1", config.beta_1) & close("beta_2", config.beta_2) & close("epsilon", config.epsilon)
        & close("big_gradient", config.big) & frame.seed.isin(config.seeds)
    )
    return frame[mask]


def run_key(lr, seed) -> str:
    return f"alpha={lr:.8g} seed={int(seed)}"


def digest_rows(rows) -> dict:
    """``{"rows", "sha256"}`` of one run's rows (one α and seed of a sweep) as the CSV stores them:
    sorted by step, no header, floats to 8 significant digits (so the rows in memory when the run
    finishes and the same rows read back from the CSV give one digest)."""
    from .results import SYNTHETIC_DTYPES  # replication.synthetic.COLUMNS, without Keras

    text = rows.sort_values("step")[list(SYNTHETIC_DTYPES)].to_csv(index=False, header=False, float_format="%.8g",
                                                                   lineterminator="\n")
    return {"rows": len(rows), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def check_sweep(config, rows, entry):
    """``(done, why)`` for ``config`` given ``rows`` (its rows in the CSV, :func:`rows_of`) and
    ``entry`` (its sweep's record in trajectories.json, or None). Done when every run (α, seed)
    holds its rows to ``config.steps``, intact. A run never computed, or computed for another
    number of steps, is simply not done; a damaged one is not done and ``why`` says which and how.

    trajectories.csv holds every sweep, so the sidecar records the row count and sha256 of each
    run's rows (:func:`digest_rows`), not of the file: a run added or recomputed later does not
    invalidate the others. A damaged run makes its whole sweep (one vectorised computation of all
    its α and seeds, seconds to minutes) be recomputed: finer would mean splitting sweeps.
    Runs recorded before these digests (the committed results/synthetic) are held to what their
    sweep's record implies instead: a row every ``record_every`` steps and at the last, each with x
    and the regret."""
    import numpy as np

    recorded = (entry or {}).get("runs", {})
    done, why = True, None
    for lr, seed in config.columns:
        run = rows[np.isclose(rows["learning_rate"].to_numpy(dtype=float), lr, rtol=1e-7, atol=0.0)
                   & (rows["seed"] == seed)]
        if run.empty:
            done = False
            continue
        problem = _check_synthetic_run(run, recorded.get(run_key(lr, seed)), (entry or {}).get("config"))
        if problem:
            done, why = False, why or f"trajectories.csv {problem} (alpha {lr:g}, seed {seed})"
        elif run["step"].max() != config.steps:
            done = False
    return done, why


def _check_synthetic_run(run, digest, recorded_config):
    import numpy as np

    if digest is not None:
        got = digest_rows(run)
        if got["rows"] != digest.get("rows"):
            return f"has {got['rows']} rows of a run, its sidecar says {digest.get('rows')}"
        if got["sha256"] != digest.get("sha256"):
            return "holds rows of a run that differ from those its sidecar records (sha256)"
        return None
    steps = run["step"].to_numpy()
    cfg = recorded_config or {}
    covered = (any(np.isclose(run["learning_rate"].iloc[0], cfg.get("learning_rates", ()), rtol=1e-7, atol=0.0))
               and int(run["seed"].iloc[0]) in cfg.get("seeds", ()))
    # The sweep's record gives the steps and interval when it covers this run; else the rows' own.
    last, every = (int(cfg["steps"]), int(cfg["record_every"])) if covered else (int(steps.max()), int(steps.min()))
    expected = np.arange(every, last + 1, every)
    expected = expected if len(expected) and expected[-1] == last else np.append(expected, last)
    if len(steps) != len(expected):
        source = "its sidecar implies" if covered else "its record steps imply"
        return f"has {len(steps)} rows of a run, {source} {len(expected)}"
    if not np.array_equal(np.sort(steps), expected):
        return "lacks record steps of a run"
    if not np.isfinite(run[["x", "x_min", "x_max", "avg_regret"]].to_numpy(dtype=float)).all():
        return "lacks values of a run"
    return None


def check_trajectories(frame, sweeps) -> str | None:
    """Why the rows ``frame`` (trajectories.csv as read) are not those ``sweeps`` (trajectories.json's
    ``sweeps``) record, or None: every recorded sweep's runs are checked by :func:`check_sweep` (a run
    of a sweep not finished yet is no damage)."""
    from types import SimpleNamespace

    for label, entry in sorted(sweeps.items()):
        config = entry.get("config") if isinstance(entry, dict) else None
        if not isinstance(config, dict):
            return f"trajectories.json records sweep {label!r} without its config"
        config = SimpleNamespace(**config)
        config.columns = [(lr, seed) for lr in config.learning_rates for seed in config.seeds]
        rows = rows_of(config, frame)
        why = check_sweep(config, rows, entry)[1] if rows is not None and len(rows) else None
        if why:
            return f"{why}, sweep {label}"
    return None
