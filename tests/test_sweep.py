"""examples/sweep_optuna.py: a short seeded study prunes shape-invalid and over-budget configurations
with archspec.analyze() before building them, and trains only the rest."""

import importlib.util
import math
import statistics
from pathlib import Path

import pytest

import archspec

optuna = pytest.importorskip("optuna")
torch = pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sweep_optuna.py"


@pytest.fixture
def sweep():
    spec = importlib.util.spec_from_file_location("sweep_optuna", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    # The models are tiny: one thread is faster than contending for the CPU with other processes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_study_prunes_invalid_configurations_before_building(sweep, monkeypatch, one_thread):
    built = []

    def counting_compile_spec(spec, overrides=None, *args, **kwargs):
        built.append(dict(overrides))
        return archspec.compile_spec(spec, overrides, *args, **kwargs)

    monkeypatch.setattr(sweep, "compile_spec", counting_compile_spec)
    enqueue = (
        {"stages": 4, "depth": 1, "width": 8, "growth": 4},  # 16 -> 1: the head conv's output would be -1
        {"stages": 1, "depth": 1, "width": 8, "growth": 4},
        {"stages": 3, "depth": 2, "width": 16, "growth": 8},  # 16 -> 2: the head conv's output would be 0
        {"stages": 2, "depth": 4, "width": 32, "growth": 32},  # valid, but 307,012 params
        {"stages": 2, "depth": 1, "width": 8, "growth": 8},
    )
    study = sweep.run_study(trials=7, seed=0, enqueue=enqueue, steps=3, max_params=50_000, max_macs=2_000_000)
    trials = study.trials
    assert len(trials) == 7

    by_shape = [t for t in trials if t.user_attrs.get("rejected") == "shape"]
    by_budget = [t for t in trials if t.user_attrs.get("rejected") == "budget"]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(by_shape) >= 2 and len(by_budget) >= 1 and len(complete) >= 2
    assert len(by_shape) + len(by_budget) + len(complete) == len(trials)
    for trial in by_shape + by_budget:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert trial.user_attrs["built"] is False and "train_s" not in trial.user_attrs
    for trial in by_shape:
        assert "sweep_net.yaml:25:5: error: layer head_conv (conv)" in trial.user_attrs["error"]
        assert trial.user_attrs["error"].endswith("[output-size]")
        with pytest.raises(archspec.SpecError):
            archspec.analyze(sweep.SPEC, trial.params)
    assert by_budget[0].params == enqueue[3]
    assert "307,012 params > --max-params 50,000" in by_budget[0].user_attrs["error"]

    # Only the complete trials were built, each once, with its own overrides, and each is shape-valid.
    assert sorted(sorted(b.items()) for b in built) == sorted(sorted(t.params.items()) for t in complete)
    for trial in complete:
        assert trial.user_attrs["built"] is True
        model = archspec.analyze(sweep.SPEC, trial.params)
        assert model.body.params == trial.user_attrs["params"] <= 50_000
        assert model.body.macs == trial.user_attrs["macs"] <= 2_000_000
        assert math.isfinite(trial.value)
    assert math.isfinite(study.best_value)
    # The pre-check takes milliseconds (the first call in a process also imports archspec's stages).
    assert statistics.median(t.user_attrs["analyze_ms"] for t in trials) < 500

    text = sweep.summary(study)
    assert f"{len(complete)} complete, {len(by_shape)} pruned by shape, {len(by_budget)} pruned by budget" in text
    assert "median" in text and "ms per trial" in text


def test_objective_is_a_plain_deterministic_function(sweep, one_thread):
    params = {"stages": 1, "depth": 1, "width": 8, "growth": 4}
    first, second = (sweep.objective(params, steps=2, seed=3) for _ in range(2))
    assert first == second and math.isfinite(first)
    record = {}
    with pytest.raises(sweep.Rejected) as raised:
        sweep.objective({**params, "stages": 4}, record=record)
    assert raised.value.reason == "shape" and record["built"] is False
