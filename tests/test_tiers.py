"""Test tiers (tests/conftest.py assigns them): every test is exactly one of unit / integration, so that
`python -m pytest -m unit` is the quick loop and nothing falls between the tiers."""
import ast
from pathlib import Path

import pytest

import conftest
from conftest import COLLECTED_TIERS, MODULE_TIERS, TIER_EXCEPTIONS, TIERS, _code_read_by, assign_tier

TESTS = Path(__file__).resolve().parent


def test_every_collected_test_has_exactly_one_tier(request):
    """Checked on the tests of this session before ``-m`` deselects (all of them in the default run)."""
    collected = request.config.stash[COLLECTED_TIERS]
    assert request.node.nodeid in collected
    wrong = {nodeid: sorted(markers & set(TIERS)) for nodeid, (markers, _) in collected.items()
             if len(markers & set(TIERS)) != 1}
    assert not wrong, f"tests without exactly one of {TIERS} (give the module a MODULE_TIERS entry): {wrong}"


def test_slow_real_data_and_cli_fixture_tests_are_integration(request):
    for nodeid, (markers, fixtures) in request.config.stash[COLLECTED_TIERS].items():
        if "slow" in markers or "searched" in fixtures:
            assert "integration" in markers, nodeid
        if "realdata" in markers:
            assert "slow" in markers, f"{nodeid} reads real data: mark it slow, the default run must not need it"


def test_every_test_module_has_a_default_tier():
    """A new module must say its tier: without one its tests that the rules do not catch have none."""
    modules = {path.stem for path in TESTS.glob("test_*.py")}
    assert modules == set(MODULE_TIERS), (modules ^ set(MODULE_TIERS))
    assert set(MODULE_TIERS.values()) <= set(TIERS)


def test_tier_exceptions_name_tests_that_exist():
    functions = {}
    for key, tier in TIER_EXCEPTIONS.items():
        module, function = key.split("[")[0].split("::")
        if module not in functions:
            tree = ast.parse((TESTS / f"{module}.py").read_text(encoding="utf-8"))
            functions[module] = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert function in functions[module], key
        assert tier in TIERS and tier != MODULE_TIERS[module], f"{key}: {tier} is already its module's tier"


def test_the_rules_in_order():
    code_cli, code_plain = "assert main(argv) == 0", "assert f(1) == 2"
    assert assign_tier("test_models::test_x", set(), False, code_plain) == "unit"  # its module's tier
    assert assign_tier("test_models::test_x", set(), False, code_cli) == "integration"  # runs the CLI
    assert assign_tier("test_models::test_x", set(), True, code_plain) == "integration"  # slow
    assert assign_tier("test_demo::test_x", set(), False, code_plain) == "integration"  # its module's tier
    assert assign_tier("test_demo::test_x", {"unit"}, False, code_cli) == "unit"  # explicit wins
    assert assign_tier("test_models::test_x", {"unit", "integration"}, False, code_plain) is None
    assert assign_tier("test_models::test_vae_learns_digits", set(), False, code_plain) == "integration"  # exception
    assert assign_tier("test_serialization::test_round_trip", set(), False, code_plain, "models.build-vgg") == \
        "integration"  # an exception for one parameter
    assert assign_tier("test_serialization::test_round_trip", set(), False, code_plain, "optimizers.adam") == "unit"
    assert assign_tier("test_new_module::test_x", set(), False, code_plain) is None  # no module default
    for code in ("subprocess.run([sys.executable])", "cli.main(['train'])", "train_experiment(EXP)",
                 "run_grid_search(points)"):
        assert conftest.INTEGRATION_CALLS.search(code), code
    for code in ("x.train_experiment_name", "domain(x)", "trainer.train_run_count"):
        assert not conftest.INTEGRATION_CALLS.search(code), code
    assert conftest.REAL_DATA_CALLS.search('real_data("mnist.npz")')
    assert not conftest.REAL_DATA_CALLS.search('conftest.real_data("mnist.npz", environ)')
    assert not conftest.REAL_DATA_CALLS.search("def real_data(name):")


def _trains(argv):
    return _runs_the_cli(argv)


def _runs_the_cli(argv):
    from replication.cli import main

    return main(argv)


def _plain():
    return 1 + 1


def test_code_is_read_through_helpers():
    """A test that calls a helper that calls a helper that runs the CLI is seen to run it."""
    def reads_nothing():
        return _plain()

    def trains():
        return _trains(["train"])

    assert not conftest.INTEGRATION_CALLS.search(_code_read_by(reads_nothing))
    code = _code_read_by(trains)
    assert "def _runs_the_cli" in code and conftest.INTEGRATION_CALLS.search(code)
    assert _code_read_by(pytest.approx) == ""  # not the test folder's code: not read
