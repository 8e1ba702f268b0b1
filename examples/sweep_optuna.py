"""An architecture sweep with Optuna that rejects bad configurations before building them.

    pip install 'archspec-nn[sweep]'      # optuna; archspec itself never imports it
    python examples/sweep_optuna.py --trials 20 --max-params 200000 --steps 30

Each trial picks values for the vars of examples/sweep_net.yaml (`stages`, `depth`, `width`,
`growth`) and first calls `archspec.analyze(spec, overrides)`: a few milliseconds, no torch. A
configuration the spec cannot shape (too many stages for the 16x16 input) is pruned with the
located error recorded as the trial's user attr `error`; one over `--max-params` or `--max-macs`
is pruned too. Only the rest are built with `archspec.compile_spec(spec, overrides)`, trained for
`--steps` steps on a synthetic 4-class task on the CPU (seeded, so a configuration always gives
the same loss) and scored by validation cross-entropy.

The core, `objective(params)`, is a plain function of a dict of var values: it returns the
validation loss or raises `Rejected` (with `reason` "shape" or "budget") before any model exists.
`optuna_objective` is the thin Optuna wrapper. The same core plugs into Ray Tune (not imported
here), reporting a rejected configuration as an infinite loss with its reason::

    from ray import tune

    def trainable(config):
        try:
            return {"loss": objective(config, steps=30, max_params=200_000)}
        except Rejected as exc:  # raised by the analyze() pre-check, before any model is built
            return {"loss": float("inf"), "rejected": exc.reason, "error": exc.message}

    param_space = {"stages": tune.randint(1, 5), "depth": tune.randint(1, 5),
                   "width": tune.choice([8, 16, 32]), "growth": tune.choice([4, 8, 16, 32])}
    tuner = tune.Tuner(trainable, param_space=param_space,
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=20))
    best = tuner.fit().get_best_result().config
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import archspec
from archspec import SpecError, analyze, compile_spec

SPEC = Path(__file__).with_name("sweep_net.yaml")
NUM_CLASSES = 4  # the spec's num_classes, and the synthetic task's

# The search space: var -> (low, high) for an integer range, or a list of choices.
SPACE: dict[str, tuple[int, int] | list[int]] = {
    "stages": (1, 4),
    "depth": (1, 4),
    "width": [8, 16, 32],
    "growth": [4, 8, 16, 32],
}


class Rejected(Exception):
    """A configuration turned away by the static pre-check: `reason` is "shape" (archspec found a
    shape error; `message` is its located diagnostic) or "budget" (over the params or MACs limit)."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def precheck(
    params: dict, spec=SPEC, max_params: int | None = None, max_macs: int | None = None, record: dict | None = None
):
    """The analyzed IR of `spec` with `params` as var overrides, or Rejected. No torch."""
    record = {} if record is None else record
    start = time.perf_counter()
    try:
        model = analyze(spec, params)
    except SpecError as exc:
        record["analyze_ms"] = 1000 * (time.perf_counter() - start)
        raise Rejected("shape", "\n".join(d.format() for d in exc.diagnostics)) from None
    record["analyze_ms"] = 1000 * (time.perf_counter() - start)
    record["params"], record["macs"] = model.body.params, model.body.macs
    if max_params is not None and model.body.params > max_params:
        raise Rejected("budget", f"{model.body.params:,} params > --max-params {max_params:,}")
    if max_macs is not None and model.body.macs > max_macs:
        raise Rejected("budget", f"{model.body.macs:,} MACs per sample > --max-macs {max_macs:,}")
    return model


def synthetic_data(n: int, seed: int, size: int = 16):
    """`n` noisy 1 x size x size images whose class is the quadrant holding a bright 4x4 square."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = 0.8 * torch.randn(n, 1, size, size, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    half = size // 2
    offsets = torch.randint(0, half - 3, (n, 2), generator=gen)
    top, left = y // 2 * half + offsets[:, 0], y % 2 * half + offsets[:, 1]
    pos = torch.arange(size)
    rows = (pos >= top[:, None]) & (pos < top[:, None] + 4)
    cols = (pos >= left[:, None]) & (pos < left[:, None] + 4)
    x[:, 0] += (rows[:, :, None] & cols[:, None, :]).float()
    return x, y


def objective(
    params: dict,
    *,
    spec=SPEC,
    steps: int = 30,
    batch: int = 32,
    lr: float = 0.01,
    seed: int = 0,
    max_params: int | None = None,
    max_macs: int | None = None,
    record: dict | None = None,
) -> float:
    """The validation loss of the spec with `params` as vars after `steps` training steps.

    Raises Rejected before building anything when analyze() finds a shape error or the model is
    over budget. `record`, when given, receives analyze_ms, params, macs, train_s and built."""
    record = {} if record is None else record
    record["built"] = False
    precheck(params, spec, max_params, max_macs, record)

    import torch
    import torch.nn.functional as F

    start = time.perf_counter()
    x_train, y_train = synthetic_data(steps * batch, seed)
    x_val, y_val = synthetic_data(128, seed + 1)
    torch.manual_seed(seed)  # the same configuration gets the same initial weights and batches
    model = compile_spec(spec, params)
    record["built"] = True
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        xb, yb = x_train[step * batch : (step + 1) * batch], y_train[step * batch : (step + 1) * batch]
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        loss = F.cross_entropy(model(x_val), y_val).item()
    record["train_s"] = time.perf_counter() - start
    return loss


def suggest(trial) -> dict:
    """The trial's var values, drawn from SPACE."""
    return {
        name: trial.suggest_int(name, *space) if isinstance(space, tuple) else trial.suggest_categorical(name, space)
        for name, space in SPACE.items()
    }


def optuna_objective(**options):
    """An Optuna objective around `objective`: a Rejected becomes optuna.TrialPruned, with the reason
    and the message in the trial's user attrs ("rejected", "error"), as are the timings."""
    import optuna

    def run(trial) -> float:
        record: dict = {}
        try:
            return objective(suggest(trial), record=record, **options)
        except Rejected as exc:
            trial.set_user_attr("rejected", exc.reason)
            trial.set_user_attr("error", exc.message)
            raise optuna.TrialPruned(exc.message) from None
        finally:
            for key, value in record.items():
                trial.set_user_attr(key, value)

    return run


def run_study(trials: int = 20, seed: int = 0, enqueue: tuple[dict, ...] = (), **options):
    """A minimising study of `trials` trials with a seeded TPE sampler; `enqueue` runs first."""
    try:
        import optuna
    except ImportError:
        sys.exit("this example needs optuna: pip install 'archspec-nn[sweep]'")
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    for params in enqueue:
        study.enqueue_trial(params)
    study.optimize(optuna_objective(seed=seed, **options), n_trials=trials)
    return study


def summary(study) -> str:
    """Trial counts by outcome, the best configuration, and where the time went."""
    trials = study.trials
    rejected = [t.user_attrs.get("rejected") for t in trials]
    analyze_ms = [t.user_attrs["analyze_ms"] for t in trials if "analyze_ms" in t.user_attrs]
    train_s = [t.user_attrs["train_s"] for t in trials if "train_s" in t.user_attrs]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    lines = [
        f"trials: {len(trials)}: {len(complete)} complete, {rejected.count('shape')} pruned by shape, "
        f"{rejected.count('budget')} pruned by budget",
    ]
    if complete:
        best = study.best_trial
        lines += [
            f"best value (validation loss): {best.value:.4f}",
            f"best params: {best.params} ({best.user_attrs['params']:,} params, {best.user_attrs['macs']:,} MACs)",
        ]
    if analyze_ms:
        lines.append(
            f"analyze: {sum(analyze_ms) / 1000:.2f} s in all (the first call imports archspec's stages), "
            f"median {statistics.median(analyze_ms):.1f} ms per trial"
        )
    if train_s:
        lines.append(
            f"build + train: {sum(train_s):.2f} s in all, median {statistics.median(train_s):.2f} s per built trial"
        )
    for t in trials:
        if t.user_attrs.get("rejected") == "shape":
            lines.append(f"e.g. pruned by shape {t.params}:\n  {t.user_attrs['error']}")
            break
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30, help="training steps per built trial")
    parser.add_argument("--max-params", type=int, default=200_000)
    parser.add_argument("--max-macs", type=int, default=5_000_000, help="multiply-adds per sample")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (these models are tiny)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", type=Path, default=SPEC)
    args = parser.parse_args(argv)
    try:
        import optuna
    except ImportError:
        sys.exit("this example needs optuna: pip install 'archspec-nn[sweep]'")
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    study = run_study(
        args.trials, args.seed, spec=args.spec, steps=args.steps, max_params=args.max_params, max_macs=args.max_macs
    )
    print(f"{archspec.DISTRIBUTION} {archspec.__version__}, spec {args.spec}")
    print(summary(study))
    print(f"wall time: {time.perf_counter() - start:.2f} s")
    best = [t.value for t in study.trials if t.state.name == "COMPLETE"]
    return 0 if best and all(math.isfinite(v) for v in best) else 1


if __name__ == "__main__":
    sys.exit(main())
