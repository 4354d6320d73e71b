"""The one store for resumable results (replication/store.py): versioned identity with the Keras
backend, the migration of schema-1 runs of another backend, the file manifest checked on every read,
and "nothing computed, nothing rewritten"."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from replication import store
from replication.runfiles import assemble, check_run_files, verify_folder

ROOT = Path(__file__).resolve().parents[1]
JAX_FOLDER = ROOT / "results" / "cifar10-cifarnet-mcgill-code"  # trained under JAX on a GPU (read-only here)


def _sha(fields) -> str:
    # The id's definition: sha256 of the identity dict's sorted-keys JSON, first 10 hex digits.
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def _config(**changes):
    from replication.trainer import RunConfig

    fields = dict(experiment="digits-logreg", dataset="digits", model="logreg", model_kwargs=(),
                  loss_function="categorical", batch_size=128, epochs=2, optimizer="adam", learning_rate=0.01, schedule="constant", beta_1=0.9,
                  beta_2=0.999, epsilon=1e-7, bias_correction=True, run=0, seed=1)
    return RunConfig(**{**fields, **changes})


def test_backend_is_in_the_identity_except_tensorflows():
    """TensorFlow's ids are those of schema 1 (no ``backend`` key); JAX's hash the backend in."""
    tf, jax = _config(), _config(backend="jax")
    assert "backend" not in tf.to_dict() and jax.to_dict()["backend"] == "jax"
    assert tf.run_id == _sha(tf.to_dict()) and jax.run_id == _sha({**tf.to_dict(), "backend": "jax"})
    assert tf.run_id != jax.run_id and tf.stem != jax.stem


def test_committed_tensorflow_runs_keep_their_ids():
    """Every committed run's stored config hashes to its id and its file name, and only runs whose
    provenance names another backend (the JAX CifarNet runs) need the migration."""
    sidecars = sorted((ROOT / "results").glob("**/runs/*.json"))
    assert len(sidecars) > 150
    migrating = set()
    for path in sidecars:
        sidecar = json.loads(path.read_text())
        assert _sha(sidecar["config"]) == sidecar["run_id"] and path.stem.endswith(sidecar["run_id"]), path
        if store.needs_migration(sidecar):
            migrating.add(path.parent.parent)
    assert migrating <= {JAX_FOLDER}


@pytest.mark.parametrize("name", ["mnist-logreg", "mnist-mlp", "mnist-cnn", "mnist-vae", "cifar10-cifarnet-paper",
                                  "mnist-logreg-mcgill-code"])
def test_tensorflow_plans_name_the_committed_runs(name, monkeypatch):
    """Planned under TensorFlow with the committed call's runs, seed and optimizers, an experiment's
    run stems are exactly those its committed train.json lists: no TensorFlow id moved."""
    from replication.trainer import plan_training

    monkeypatch.setattr(store, "keras_backend", lambda: "tensorflow")
    meta = json.loads((ROOT / "results" / name / "train.json").read_text())
    plan = plan_training(name, out_dir=ROOT / "results", runs=meta["runs"], seed=meta["seed"],
                         optimizers=meta["optimizers"], epochs=meta["experiment"]["epochs"])
    assert [c.stem for c in plan.configs] == meta["run_files"]


def _copy_jax_run(tmp_path):
    """One committed JAX run's files in a fresh experiment folder, with a train.json listing it and the
    history.csv/iterations.csv the project's own assembly code makes of it."""
    meta = json.loads((JAX_FOLDER / "train.json").read_text())
    stem = meta["run_files"][0]
    exp_dir = tmp_path / JAX_FOLDER.name
    (exp_dir / "runs").mkdir(parents=True)
    for suffix in (".csv", ".iterations.csv", ".json"):
        shutil.copy(JAX_FOLDER / "runs" / f"{stem}{suffix}", exp_dir / "runs")
    sidecar = json.loads((exp_dir / "runs" / f"{stem}.json").read_text())
    if store.schema_of(sidecar) >= 2:  # the committed folder was migrated since: its schema-1 self again
        old_id = sidecar.pop("migrated_from")["run_id"]
        old = stem[: -len(sidecar["run_id"])] + old_id
        for suffix in (".csv", ".iterations.csv"):
            (exp_dir / "runs" / f"{stem}{suffix}").rename(exp_dir / "runs" / f"{old}{suffix}")
        sidecar["files"] = {name.replace(stem, old): digest for name, digest in sidecar["files"].items()}
        del sidecar["schema"], sidecar["config"]["backend"]
        (exp_dir / "runs" / f"{old}.json").write_text(json.dumps({**sidecar, "run_id": old_id}))
        (exp_dir / "runs" / f"{stem}.json").unlink()
        stem = old
    meta = {**meta, "run_files": [stem], "trained": [stem], "skipped": [], "optimizers": ["adam"], "runs": 1}
    (exp_dir / "train.json").write_text(json.dumps(meta))
    history, iterations = assemble(exp_dir / "runs", [stem], ["adam"], elbo=False)
    for frame, name in ((history, "history.csv"), (iterations, "iterations.csv")):
        frame.to_csv(exp_dir / name, index=False, lineterminator="\n")
    return exp_dir, stem


def test_migration_of_a_committed_jax_run_verifies_and_is_read_back_under_jax(tmp_path, monkeypatch):
    from replication.errors import UserError
    from replication.trainer import _check_run, _read_back, _refuse_conflicts, plan_training

    exp_dir, old = _copy_jax_run(tmp_path)
    csv_bytes = (exp_dir / "runs" / f"{old}.csv").read_bytes()
    history = (exp_dir / "history.csv").read_bytes()
    assert verify_folder(exp_dir) is None
    monkeypatch.setattr(store, "keras_backend", lambda: "jax")
    plan = plan_training(JAX_FOLDER.name, optimizers=["adam"], runs=1, out_dir=tmp_path)
    assert plan.configs[0].stem != old and _read_back(plan, False) == ({}, {})  # schema 1: not JAX's id
    with pytest.raises(UserError, match=f"ids predate the backend.*replicate migrate {tmp_path}"):
        _refuse_conflicts(plan)

    lines = []
    renamed = store.migrate(tmp_path, say=lines.append)
    new = renamed[exp_dir][old]
    assert lines == [f"{exp_dir}: 1 run(s) trained under jax migrated to identity schema 2 (the backend in the run id)"]
    assert new == plan.configs[0].stem  # the id a JAX process computes for this run
    runs = exp_dir / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [f"{new}.csv", f"{new}.iterations.csv", f"{new}.json"]
    assert (runs / f"{new}.csv").read_bytes() == csv_bytes and (exp_dir / "history.csv").read_bytes() == history
    sidecar = json.loads((runs / f"{new}.json").read_text())
    assert sidecar["schema"] == 2 and sidecar["config"]["backend"] == "jax"
    assert sidecar["run_id"] == _sha(sidecar["config"]) and new.endswith(sidecar["run_id"])
    assert json.loads((exp_dir / "train.json").read_text())["run_files"] == [new]
    assert check_run_files(runs / f"{new}.csv", runs / f"{new}.iterations.csv", sidecar) is None
    assert verify_folder(exp_dir) is None
    assert _check_run((runs / f"{new}.csv", runs / f"{new}.iterations.csv", runs / f"{new}.json"),
                      plan.configs[0])[0] is not None
    finished, damaged = _read_back(plan, False)
    assert list(finished) == [new] and damaged == {}
    _refuse_conflicts(plan)  # JAX trains on: nothing to refuse
    assert store.migrate(tmp_path, say=lines.append) == {} and len(lines) == 1  # a second call: nothing to do

    monkeypatch.setattr(store, "keras_backend", lambda: "tensorflow")
    tf_plan = plan_training(JAX_FOLDER.name, optimizers=["adam"], runs=1, out_dir=tmp_path)
    assert _read_back(tf_plan, False) == ({}, {})
    with pytest.raises(UserError, match="trained under the jax backend, and this process trains under tensorflow"):
        _refuse_conflicts(tf_plan)


def test_migrate_command_says_what_it_did(tmp_path, capsys):
    from replication.cli import main

    exp_dir, old = _copy_jax_run(tmp_path)
    assert main(["migrate", "--out", str(tmp_path)]) == 0
    assert "1 run(s) trained under jax migrated to identity schema 2" in capsys.readouterr().out
    assert not (exp_dir / "runs" / f"{old}.json").exists() and verify_folder(exp_dir) is None
    assert main(["migrate", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"{tmp_path}: nothing to migrate\n"
    assert main(["migrate", "--out", str(tmp_path / "absent")]) == 2


# -- the manifest on every read, and nothing computed, nothing rewritten ------------------------------
EXP = "digits-logreg"
COMMANDS = {
    "gridsearch": ["gridsearch", EXP, "--engine", "gridsearchcv", "--optimizers", "adam", "--learning-rates", "0.01",
                   "--beta2s", "0.99", "--epochs", "1", "--cv", "2"],
    # after the search: train reads its best_params.json (a later search would change train.json's sources)
    "train": ["train", EXP, "--runs", "1", "--epochs", "2"],
    "synthetic": ["synthetic", "--setting", "online", "--optimizers", "adam", "--steps", "300", "--learning-rates",
                  "0.1", "--record-every", "100", "--no-plots"],
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One results folder where each command finished its small job once."""
    from replication.cli import main

    out = tmp_path_factory.mktemp("store")
    for argv in COMMANDS.values():
        assert main([*argv, "--out", str(out)]) == 0
    return out


@pytest.fixture()
def copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "out")
    return tmp_path / "out"


def _state(folder):
    """Every file under ``folder`` with its inode, mtime and bytes: a file rewritten (temp file +
    rename) gets a new inode even within one clock tick, so no waiting is needed to see it."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_rerun_with_nothing_to_compute_rewrites_no_file(copy, command, capsys):
    from replication.cli import main

    before = _state(copy)
    assert {f"{EXP}/history.csv", f"{EXP}/train.json", f"{EXP}/gridsearch.csv", f"{EXP}/gridsearch.json",
            "gridsearch_table.csv", "synthetic/trajectories.csv", "synthetic/alpha_search.csv"} <= set(before)
    assert main([*COMMANDS[command], "--out", str(copy)]) == 0
    err = capsys.readouterr().err
    assert "recomputing" not in err and "retraining" not in err and "fold 1/2 done" not in err
    assert command == "gridsearch" or "already done, skipped" in err
    after = _state(copy)
    assert sorted(after) == sorted(before)
    changed = [name for name in before if after[name] != before[name]]
    assert changed == [], f"{command} rewrote {changed}"


def _flip_digit(path, after=b"\n"):
    """Change one digit of ``path`` after its header (one byte; the row count stays)."""
    data = bytearray(path.read_bytes())
    start = data.index(after) + 1
    i = next(k for k in range(start, len(data)) if chr(data[k]).isdigit() and chr(data[k]) != "0")
    data[i] = ord("1") if data[i] != ord("1") else ord("2")
    path.write_bytes(bytes(data))


def test_a_changed_byte_in_a_run_file_is_seen_by_report_and_train(copy, capsys):
    from replication import report, results
    from replication.cli import main
    from replication.errors import UserError

    run = next(p for p in (copy / EXP / "runs").glob("*.csv") if not p.name.endswith(".iterations.csv"))
    _flip_digit(run)
    with pytest.raises(UserError, match=r"differs from the file its sidecar records \(sha256\)"):
        results.load_history(EXP, out=copy)
    assert report.collect(copy)["experiments"][EXP]["history"] is None
    capsys.readouterr()
    assert main([*COMMANDS["train"], "--out", str(copy)]) == 0
    assert f"runs/{run.name} differs from the file its sidecar records (sha256); retraining" in capsys.readouterr().err
    assert verify_folder(copy / EXP) is None


@pytest.mark.parametrize("name", ["gridsearch.csv", "best_params.json"])
def test_a_changed_byte_in_the_search_outputs_is_seen_by_report_and_gridsearch(copy, name, capsys):
    from replication import report, results
    from replication.cli import main
    from replication.errors import UserError

    _flip_digit(copy / EXP / name, after=b"\n" if name.endswith(".csv") else b":")
    with pytest.raises(UserError, match=f"{name} differs from the file gridsearch.json records"):
        results.load_gridsearch(EXP, out=copy)
    assert report.collect(copy)["experiments"][EXP]["gridsearch"] is None
    capsys.readouterr()
    assert main([*COMMANDS["gridsearch"], "--out", str(copy)]) == 2
    err = capsys.readouterr().err.splitlines()  # the search's start line, then the one-line refusal
    assert f"{name} differs from the file gridsearch.json records" in err[-1] and "Traceback" not in "".join(err)


def test_a_changed_byte_in_the_trajectories_is_seen_by_report_and_synthetic(copy, capsys):
    from replication import report, results
    from replication.cli import main
    from replication.errors import UserError

    csv = copy / "synthetic" / "trajectories.csv"
    lines = csv.read_text().splitlines(keepends=True)
    header = lines[0].split(",")
    cells = lines[2].split(",")
    x = header.index("x")
    cells[x] = repr(float(cells[x]) + 0.125)  # one value of one run; row count unchanged
    lines[2] = ",".join(cells)
    csv.write_text("".join(lines))
    with pytest.raises(UserError, match=r"holds rows of a run that differ from those its sidecar records \(sha256\)"):
        results.load_synthetic(copy)
    assert report.collect(copy)["synthetic"] is None
    capsys.readouterr()
    assert main([*COMMANDS["synthetic"], "--out", str(copy)]) == 0
    assert "differ from those its sidecar records (sha256) (alpha 0.1, seed 0); recomputing" in capsys.readouterr().err
    assert len(results.load_synthetic(copy)) == 3


def test_synthetic_digests_read_the_columns_the_synthetic_module_writes():
    """store.digest_rows takes the column order from results.SYNTHETIC_DTYPES (no Keras): it must be
    replication.synthetic.COLUMNS, or digests of new runs would not match their rows."""
    from replication import results, synthetic

    assert list(results.SYNTHETIC_DTYPES) == synthetic.COLUMNS


def test_manifest_definition(tmp_path):
    """rows = lines after the header, sha256 of the bytes; a missing file and a missing entry are named."""
    path = tmp_path / "a.csv"
    path.write_bytes(b"x\n1\n2\n")
    files = store.manifest([path])
    assert files == {"a.csv": {"rows": 2, "sha256": hashlib.sha256(b"x\n1\n2\n").hexdigest()}}
    assert store.check_manifest(files, [path]) is None
    path.write_bytes(b"x\n1\n")
    assert store.check_manifest(files, [path]) == "a.csv has 1 rows, its sidecar says 2"
    path.write_bytes(b"x\n1\n3\n")
    assert store.check_manifest(files, [path]) == "a.csv differs from the file its sidecar records (sha256)"
    assert store.check_manifest(files, [tmp_path / "b.csv"]) == "its sidecar records no checksum of b.csv"
    path.unlink()
    assert store.check_manifest(files, [path]) == "a.csv is missing"


def _settings(record):
    """The SearchSettings a committed point record was keyed under, rebuilt from its stored dict."""
    import dataclasses

    from gridsearch.search import SearchSettings

    stored = record["settings"]
    fields = {f.name for f in dataclasses.fields(SearchSettings)}
    values = {k: v for k, v in stored.items() if k in fields}
    values["model_kwargs"] = tuple(tuple(tuple(x) if isinstance(x, list) else x for x in pair)
                                   for pair in stored["model_kwargs"])
    values["protocol"] = tuple(sorted((stored.get("protocol") or {}).items()))
    return SearchSettings(**values)


def test_grid_point_keys_carry_the_backend_except_tensorflows(monkeypatch):
    """Every committed grid point's key is what point_key computes under TensorFlow (keys unchanged),
    and under another backend the same point gets another key (never read back as TensorFlow's)."""
    from gridsearch.search import GridPoint

    records = sorted((ROOT / "results").glob("*/gridsearch_points/*.json"))
    assert len(records) > 100
    for path in records:
        record = json.loads(path.read_text())
        row = record["row"]
        point = GridPoint(row["optimizer"], row["learning_rate"], row["beta_2"],
                          {"default": None, "on": True, "off": False}[row["bias_correction"]])
        settings = _settings(record)
        monkeypatch.setattr(store, "keras_backend", lambda: "tensorflow")
        assert settings.point_key(point) == record["key"] == path.stem, path
        monkeypatch.setattr(store, "keras_backend", lambda: "jax")
        jax = settings.point_key(point)
        assert jax != path.stem and jax.rsplit("_", 1)[0] == path.stem.rsplit("_", 1)[0]


# command -> (what its refusal says the folder holds, its conflict check, the sidecar that check reads)
MIXED = {
    "synthetic": ("sweeps computed", store.sweeps_backend_conflict, "synthetic/trajectories.json"),
    "gridsearch": ("a grid search scored", store.search_backend_conflict, f"{EXP}/gridsearch.json"),
}


@pytest.mark.parametrize("command", list(MIXED))
def test_synthetic_and_gridsearch_refuse_to_mix_backends_in_one_folder(copy, capsys, monkeypatch, command):
    """Sweeps and grid points computed under one Keras backend are never read back, nor merged with
    new ones, under another (trajectories.csv, gridsearch.csv and best_params.json have no backend
    column): one line, exit 2, nothing written. The other backend is simulated where the identity
    reads it."""
    import keras

    from replication.cli import main

    what, conflict, sidecar = MIXED[command]
    here = keras.backend.backend()
    other = "jax" if here == "tensorflow" else "tensorflow"
    before = _state(copy)
    monkeypatch.setattr(store, "keras_backend", lambda: other)
    assert main([*COMMANDS[command], "--out", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"holds {what} under the {here} backend, and this process computes under {other}" in err
    assert _state(copy) == before
    assert conflict(copy / sidecar, here) is None
