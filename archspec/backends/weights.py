"""Loading a state_dict file into a compiled model, strictly, with errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import WeightsError, printable, show_value
from ..core.limits import current, how_to_raise, show_size
from .statedicts import compatible

SHOWN = 5  # keys listed per kind of mismatch before "and N more"


def load_weights(module: torch.nn.Module, path: str | Path, strict: bool = True):
    """Load `path` (a torch.save'd state_dict) into `module`. Strictly (WeightsError if they differ
    at all), returning None; or, with strict=False, every tensor that fits by key, shape and dtype,
    returning the diff.Diff of what was transferred and what was not. Every failure, of reading the
    file or of loading it, is a WeightsError that names the file."""
    outline = _outline(path) if strict else None
    if outline is not None:  # keys, shapes and dtypes from the archive's records: a misfit is never inflated
        problems = mismatches(module.state_dict(), outline)
        if problems:
            raise WeightsError(f"{printable(path)} does not fit the model: " + "; ".join(problems))
    state = read_state_dict(path)
    if not strict:
        from .statedicts import load_partially

        try:
            return load_partially(module, state)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise WeightsError(f"cannot load {printable(path)} into the model: {_first_line(exc)}") from None
    problems = mismatches(module.state_dict(), state)
    if problems:
        raise WeightsError(f"{printable(path)} does not fit the model: " + "; ".join(problems))
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise WeightsError(f"cannot load {printable(path)} into the model: {_first_line(exc)}") from None
    return None


def _outline(path: str | Path) -> dict[str, torch.Tensor] | None:
    """The state_dict's tensors on the meta device, read from the archive's records without their
    data (mapped, not read); None where that cannot be (a legacy file, a sparse tensor on older
    torch): the full read then says what is wrong, as before."""
    try:
        return read_state_dict(path, "meta")
    except WeightsError:
        return None


def read_state_dict(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The state_dict in `path`: a dict of dense tensors by string key (a training checkpoint's
    "state_dict" entry too). The file must be a regular file whose tensors, once inflated, fit in
    limit weights_bytes (checked from the archive's metadata, before torch.load reads anything).
    On the "meta" device only the records are read: keys, shapes and dtypes, no tensor's data."""
    _check_size(path)
    try:
        # weights_only: a weights file is data; unpickling anything else could run code.
        state = torch.load(path, map_location=device, weights_only=True, mmap=device == "meta")
    except Exception as exc:  # the file's content is the user's: whatever it makes torch raise, say so
        raise WeightsError(
            f"cannot read {printable(path)} as a state_dict (torch.load with weights_only=True): {_first_line(exc)}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint
    if not isinstance(state, dict):
        raise WeightsError(f"{printable(path)} holds a {type(state).__name__}, not a state_dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str):
            message = f"has a key {show_value(key)} ({type(key).__name__}); a state_dict's keys are strings"
            raise WeightsError(f"{printable(path)} {message}")
        if not isinstance(value, torch.Tensor):
            what = type(value).__name__
            raise WeightsError(f"{printable(path)} holds a {what} at {printable(key, 120)}, not a tensor")
        if value.layout != torch.strided or value.is_quantized or value.device.type != device:
            what = str(value.layout).removeprefix("torch.") if value.layout != torch.strided else None
            what = what or ("quantized" if value.is_quantized else f"{value.device.type} device")
            where = f"{printable(path)} holds a {what} tensor at {printable(key, 120)}"
            raise WeightsError(f"{where}; a model's weights are dense tensors")
    return state


def _check_size(path: str | Path) -> None:
    """WeightsError for a path that is no regular file, or whose tensors would take more than limit
    weights_bytes once read: a zip archive (torch.save's format) by the sizes its directory gives
    (a few MB of deflated zeros can inflate to gigabytes), any other file by its own size."""
    import os
    import stat
    import zipfile

    try:
        info = os.stat(path)
    except TypeError:
        raise WeightsError(f"weights is the path of a state_dict file, not a {type(path).__name__}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if isinstance(exc, FileNotFoundError):
            raise WeightsError(f"no such weights file: {printable(path)}") from None
        raise WeightsError(f"cannot read weights file {printable(path)}: {reason}") from None
    if not stat.S_ISREG(info.st_mode):
        raise WeightsError(f"{printable(path)} is not a regular file; a weights file is one torch.save wrote")
    limit = current().weights_bytes
    size = info.st_size
    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        pass  # not a zip archive (torch's legacy format): torch.load reads it as it is
    if size > limit:
        more = f"more than weights may take ({how_to_raise('weights_bytes')})"
        raise WeightsError(f"{printable(path)} holds {show_size(size)} once read, {more}")
    from ..analyses.fit import available_memory

    memory = current().memory
    available = memory if memory is not None else available_memory(torch.device("cpu"))
    if available is not None and size > available:
        if memory is None:
            room = f"but {show_size(available)} is available on this machine ({how_to_raise('memory')})"
        else:
            room = f"more than {how_to_raise('memory')}"
        raise WeightsError(f"{printable(path)} holds {show_size(size)} once read, {room}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
        f"{label} ({len(keys)}): {', '.join(printable(key, 160) for key in keys[:SHOWN])}"
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
