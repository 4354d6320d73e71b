"""Fixtures shared by test modules."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import pytest

from replication.cli import main

# The grid-search fixture: digits' logistic regression; α = 1e38 reliably overflows the weights to
# inf/NaN on the first epoch (a diverged point).
EXPERIMENT = "digits-logreg"
DIVERGES = "1e38"


@pytest.fixture(scope="session")
def searched(tmp_path_factory):
    """GridSearchCV engine via the CLI: adam, amsgrad × α ∈ {0.01, 1e38} × β2 ∈ {0.99, 0.999},
    3 folds, 2 epochs. Returns (out folder, argv)."""
    out = tmp_path_factory.mktemp("gs")
    argv = ["gridsearch", EXPERIMENT, "--engine", "gridsearchcv", "--learning-rates", "0.01", DIVERGES,
            "--beta2s", "0.99", "0.999", "--epochs", "2", "--out", str(out)]
    assert main(argv) == 0
    return out, argv


class ManualClock:
    """Stands in for :func:`replication.io.clock`, which every timestamp written beside a result reads:
    stopped until ``advance(seconds)`` moves it on, so a test need not sleep for a rewrite to show."""

    def __init__(self, start=_dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)):
        self.now = start

    def __call__(self) -> _dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += _dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> ManualClock:
    """replication.io's clock, stopped (ManualClock)."""
    from replication import io

    manual = ManualClock()
    monkeypatch.setattr(io, "clock", manual)
    return manual


# Real data for the slow tests: $REPLICATION_DATA_DIR (as the CLI reads it), else ../shared/data
# beside the checkout. Read once at start-up: some test modules unset the variable for their own tests.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
_ENVIRON_AT_START = dict(os.environ)


def real_data_dir(environ=None) -> Path:
    environ = _ENVIRON_AT_START if environ is None else environ
    return Path(environ.get("REPLICATION_DATA_DIR") or DEFAULT_DATA_DIR)


def real_data(name: str, environ=None) -> Path:
    """``<real data dir>/<name>``, or skip the test saying where it looked and how to point elsewhere."""
    path = real_data_dir(environ) / name
    if not path.is_file():
        pytest.skip(f"{name} not found in {path.parent} (set REPLICATION_DATA_DIR to the folder holding it)")
    return path


def describe_real_data(environ=None) -> str:
    environ = _ENVIRON_AT_START if environ is None else environ
    folder = real_data_dir(environ)
    found = [name for name in ("mnist.npz", "cifar10.npz") if (folder / name).is_file()]
    source = "$REPLICATION_DATA_DIR" if environ.get("REPLICATION_DATA_DIR") else "default"
    return (f"real data for the slow tests ({source}): {folder} "
            f"({', '.join(found) if found else 'no mnist.npz: slow tests that need it will skip'})")


def pytest_report_header(config):
    return describe_real_data()


# -- Test tiers --------------------------------------------------------------------------------------
# Every test carries exactly one of ``unit`` (no CLI command end to end, no subprocess, no training beyond
# a few steps: well under a second each) or ``integration`` (the rest), plus ``slow`` and/or ``realdata``
# where they apply. Assigned here from what a test's code does rather than by decorating each test:
#   1. an explicit @pytest.mark.unit / @pytest.mark.integration on the test wins;
#   2. a test listed in TIER_EXCEPTIONS gets the tier given there (tests that train for longer than a few
#      steps without calling the CLI, found with `python -m pytest -m unit --durations=0`);
#   3. ``slow`` tests are integration (they are not "well under a second");
#   4. a test whose code, or a fixture or helper of the test modules it calls, runs the CLI (``main(``),
#      a subprocess or a whole training / grid search entry point is integration;
#   5. otherwise the tier of its module in MODULE_TIERS. A module missing there has no default: its tests
#      that rule 4 does not catch stay without a tier and tests/test_tiers.py fails naming them.
# ``realdata`` is added to any test whose code calls ``real_data(`` (real MNIST / CIFAR-10 files).
import inspect  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import textwrap  # noqa: E402
import tokenize  # noqa: E402

TIERS = ("unit", "integration")
TESTS_DIR = Path(__file__).resolve().parent
MODULE_TIERS = {
    "test_api": "integration", "test_cli": "unit", "test_concurrency": "unit", "test_datasets": "unit", "test_demo": "integration",
    "test_experiments": "unit", "test_gridsearch": "unit", "test_input_checks": "unit",
    "test_integrity": "unit", "test_jax_only": "integration", "test_library_calls": "unit", "test_losses": "unit", "test_mcgill_code": "unit",
    "test_models": "unit", "test_optimizers": "unit", "test_readme": "unit", "test_report": "unit",
    "test_recycle": "unit", "test_registry": "unit", "test_results": "unit", "test_serialization": "unit", "test_stacked": "unit", "test_stats": "unit",
    "test_stops": "unit", "test_store": "unit", "test_structure": "unit", "test_synthetic": "unit", "test_tiers": "unit",
    "test_trainer": "unit", "test_user_optimizer": "integration", "test_verdicts": "unit",
}
# "module::test function" (or "module::test function[parameter id]") -> tier, for what the rules above get
# wrong: tests that compile or train for seconds without running the CLI (measured with -m unit --durations=0
# on 2 busy cores: over ~1 s a call), and those reading all committed results (test_tiers checks the names).
_SLOW_CALLS = {
    "test_gridsearch": ["test_early_stopping_as_mcgill_stops_when_training_loss_stalls",
                        "test_factory_routes_hyperparameters_into_our_optimizer_class"],
    "test_losses": ["test_fit_reports_the_formula_and_steps_along_its_gradient"],
    "test_models": ["test_models_train_one_step", "test_local_response_normalization_gradient_through_fit",
                    "test_vae_learns_digits", "test_works_inside_scikeras"],
    "test_optimizers": ["test_matches_float64_reference", "test_float32_tracks_reference",
                        "test_bias_corrected_equals_keras_builtin", "test_keras_file_round_trip",
                        "test_amsgrad_v_hat_never_decreases_and_dominates_v"],
    "test_readme": ["test_generated_tables_equal_what_the_committed_results_give",
                    "test_the_compact_verdicts_are_the_full_ones_without_the_numbers",
                    "test_numbers_come_from_the_sidecars"],
    "test_report": ["test_cifar_section_reports_all_and_exact_test_metrics"],
    "test_serialization": [f"test_round_trip[models.build-{m}]" for m in
                           ("vgg", "small-vgg", "cifarnet", "cifarnet-paper", "cifarnet-coded", "cnn", "vae", "mlp")],
    "test_stacked": ["test_per_member_optimizer_equals_separate_optimizers",
                     "test_stacked_mlp_member_equals_its_own_keras_fit",
                     "test_a_diverging_member_leaves_the_others_untouched", "test_early_stopping_per_member_as_mcgill"],
    "test_synthetic": ["test_compiled_loop_matches_python_reference",
                       "test_draws_are_per_seed_bytes_and_blocks_do_not_change_results",
                       "test_section3_family_adam_goes_to_plus_one_with_theorem1_betas",
                       "test_adam_fails_where_amsgrad_converges_online",
                       "test_state_at_step_t_is_the_end_of_a_t_step_run",
                       "test_gamma_never_negative_for_amsgrad_but_is_for_adam"],
    "test_trainer": ["test_gamma_columns_match_hand_computation"],
}
TIER_EXCEPTIONS: dict[str, str] = {f"{module}::{test}": "integration"
                                   for module, tests in _SLOW_CALLS.items() for test in tests}
INTEGRATION_CALLS = re.compile(r"(?<![.\w])(main|train_experiment|train_run|run_grid_search|run_ablation)\(|"
                               r"\bcli\.main\(|\bsubprocess\b|sys\.executable")
REAL_DATA_CALLS = re.compile(r"(?<!def )(?<![.\w])real_data\(")


_TEXT_TOKENS = {tokenize.STRING, tokenize.COMMENT, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}


def _without_strings(source: str) -> str:
    """``source`` without its strings and comments: a docstring that mentions ``main(`` runs nothing."""
    source = textwrap.dedent(source)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    text = list(source)
    for token in tokens:
        if token.type in _TEXT_TOKENS:
            begin = starts[token.start[0] - 1] + token.start[1]
            end = starts[token.end[0] - 1] + token.end[1]
            text[begin:end] = " " * (end - begin)
    return "".join(text)


def _code_read_by(func, seen=None) -> str:
    """The source of ``func`` and of every function of the test folder it names, transitively (helpers,
    other tests' helpers imported from conftest), so that a test calling ``_train(...)`` that calls
    ``main(...)`` is seen to run the CLI."""
    seen = set() if seen is None else seen
    func = inspect.unwrap(func)
    code = getattr(func, "__code__", None)
    if code is None or func in seen or not Path(code.co_filename).resolve().is_relative_to(TESTS_DIR):
        return ""
    seen.add(func)
    try:
        source = _without_strings(inspect.getsource(func))
    except (OSError, TypeError):
        return ""
    names = set(re.findall(r"(?<![.\w])[A-Za-z_]\w*", source))  # not attributes: conftest.real_data is not called
    called = [func.__globals__[n] for n in names if callable(func.__globals__.get(n)) and n != func.__name__]
    return source + "".join(_code_read_by(f, seen) for f in called if inspect.isfunction(f))


_READ: dict = {}


def _read_once(func) -> str:
    """_code_read_by, once per function (a parametrized test is one function for many items)."""
    if func not in _READ:
        _READ[func] = _code_read_by(func)
    return _READ[func]


def _fixture_funcs(item):
    """The functions of the fixtures a test uses (its own, conftest's and those they request)."""
    infos = getattr(item, "_fixtureinfo", None)
    for defs in (infos.name2fixturedefs.values() if infos is not None else ()):
        for fixturedef in defs:
            yield fixturedef.func


def tier_key(item) -> str:
    """``module::function`` without parameters: the key of TIER_EXCEPTIONS."""
    return f"{Path(str(item.fspath)).stem}::{getattr(item, 'originalname', item.name)}"


def assign_tier(key: str, explicit: set[str], slow: bool, code: str, params: str = "") -> str | None:
    """The tier of one test (``key`` from tier_key, ``params`` its parameter id) by the rules at the top of
    this section, or None when nothing gives one."""
    if len(explicit) == 1:
        return next(iter(explicit))
    if explicit:  # two explicit tiers: leave both, test_tiers reports it
        return None
    for exception in (f"{key}[{params}]", key):
        if exception in TIER_EXCEPTIONS:
            return TIER_EXCEPTIONS[exception]
    if slow or INTEGRATION_CALLS.search(code):
        return "integration"
    return MODULE_TIERS.get(key.split("::")[0])


def pytest_collection_modifyitems(config, items):
    """Adds the tier markers before ``-m`` deselects (conftest hooks run before the mark plugin's), and
    keeps every collected test's tiers for tests/test_tiers.py."""
    tiers = {}
    for item in items:
        explicit = {t for t in TIERS if item.get_closest_marker(t) is not None}
        function = getattr(item, "function", None)
        code = "".join(_read_once(f) for f in (function, *_fixture_funcs(item)) if f is not None)
        callspec = getattr(item, "callspec", None)
        tier = assign_tier(tier_key(item), explicit, item.get_closest_marker("slow") is not None, code,
                           callspec.id if callspec is not None else "")
        if tier is not None and not explicit:
            item.add_marker(tier)
        if REAL_DATA_CALLS.search(code) and item.get_closest_marker("realdata") is None:
            item.add_marker("realdata")
        tiers[item.nodeid] = ({m for m in (*TIERS, "slow", "realdata") if item.get_closest_marker(m) is not None},
                              set(getattr(item, "fixturenames", ())))
    config.stash[COLLECTED_TIERS] = tiers


# nodeid -> (its markers among unit, integration, slow, realdata; its fixtures), for every collected test
COLLECTED_TIERS = pytest.StashKey[dict]()
