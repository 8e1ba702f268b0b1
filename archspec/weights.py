"""Loading a state_dict file into a compiled model, strictly, with errors a person can act on."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .diff import compatible
from .errors import WeightsError

SHOWN = 5  # keys listed per kind of mismatch before "and N more"


def load_weights(module: torch.nn.Module, path: str | Path, strict: bool = True):
    """Load `path` (a torch.save'd state_dict) into `module`. Strictly (WeightsError if they differ
    at all), returning None; or, with strict=False, every tensor that fits by key, shape and dtype,
    returning the diff.Diff of what was transferred and what was not."""
    state = read_state_dict(path)
    if not strict:
        from .diff import load_partially

        return load_partially(module, state)
    problems = mismatches(module.state_dict(), state)
    if problems:
        raise WeightsError(f"{path} does not fit the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise WeightsError(f"no such weights file: {path}")
    try:
        # weights_only: a weights file is data; unpickling anything else could run code.
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"cannot read {path} as a state_dict (torch.load with weights_only=True): {first_line}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state_dict of tensors")
    return state


def mismatches(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> list[str]:
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    wrong = [
        f"{key} {tuple(given[key].shape)} != {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key in given and tuple(given[key].shape) != tuple(tensor.shape)
    ]
    wrong_dtypes = [
        f"{key} {_dtype(given[key])} != {_dtype(tensor)}"
        for key, tensor in expected.items()
        if key in given and not compatible(_dtype(given[key]), _dtype(tensor))
    ]
    return [
        f"{label} ({len(keys)}): {', '.join(keys[:SHOWN])}"
        + (f", and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes (file != model)", wrong),
            ("wrong dtypes (file != model)", wrong_dtypes),
        )
        if keys
    ]


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
