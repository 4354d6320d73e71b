"""The structure the issue on one store asks for: short functions that each do one stage."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80


@pytest.mark.parametrize("package", ["replication", "gridsearch"])
def test_no_function_is_longer_than_80_lines(package):
    long = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 80 lines: " + "; ".join(long)


def test_training_is_split_into_plan_run_and_assemble():
    """train_experiment plans (plan_training, nothing written), trains the missing runs, and
    assembles history.csv through runfiles.assemble, the one function that verify_folder checks
    committed files against."""
    from replication import runfiles, trainer

    assert callable(trainer.plan_training) and callable(runfiles.assemble)
    source = ast.unparse(ast.parse(Path(trainer.__file__).read_text(encoding="utf-8")))
    assert source.count("assemble(") == 1  # the assembly has one home

