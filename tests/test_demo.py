"""``replicate demo`` as a new user runs it: from the repository root, default output folder.

The demo must leave a clone as it found it (issue 12 §1): it writes under ``demo/`` (ignored by
git) and never over the committed replication in ``results/``. Run as a subprocess in a folder
holding a copy of the committed ``results/``, with the steps and runs cut down (~1 min quiet).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked(folder):
    out = subprocess.run(["git", "ls-files", "-z", folder], cwd=ROOT, capture_output=True, check=True)
    return [name for name in out.stdout.decode().split("\0") if name]


def _digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="backend-independent file handling; run once, on the default backend")
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_demo_writes_under_demo_and_leaves_the_committed_results_alone(tmp_path):
    for name in _tracked("results"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, tmp_path / name)
    before = _digests(tmp_path)
    # This checkout's code, run from the copy as `replicate demo` would be from a clone's root.
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from replication.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "demo", "--steps", "20000", "--runs", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = _digests(tmp_path)
    changed = [name for name in before if after.get(name) != before[name]]
    assert changed == []  # not one committed file rewritten
    new = sorted(set(after) - set(before))
    assert new and all(name.startswith("demo/") for name in new), new[:5]
    assert {"demo/REPORT.md", "demo/digits-mlp/history.csv", "demo/synthetic/trajectories.csv"} <= set(new)
    # and git ignores what the demo writes, so `git status --porcelain` stays empty in a clone
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *new], cwd=ROOT, capture_output=True, text=True)
    assert sorted(ignored.stdout.split()) == new
    # stage headers travel with the progress lines they introduce (stderr), not on stdout
    assert "== 2b. final runs: digits-logreg ==" in proc.stderr
    assert "==" not in "".join(line[:2] for line in proc.stdout.splitlines())
    assert "Traceback" not in proc.stderr


def test_help_and_readme_give_the_same_demo_time(capsys):
    import re

    from replication.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    minutes = int(re.search(r"demo/ \(~(\d+) min on 2 CPU cores\)", help_text).group(1))
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    measured = re.search(r"median (\d+) min (\d+) s \((\d+), (\d+), (\d+) s\)", readme)
    runs = sorted(int(x) for x in measured.groups()[2:])
    assert int(measured.group(1)) * 60 + int(measured.group(2)) == runs[1]  # the median of the three
    assert minutes == round(runs[1] / 60)
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    demo_help = " ".join(capsys.readouterr().out.split())
    assert "default demo/" in demo_help and "--force" in demo_help and "recompute everything" in demo_help
