"""An adapter directory: LoRA weights, optimizer state and config (mlx-lm's layout), written so
that a crash at any moment leaves the old directory or the new one, never a mix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgecl import faults
from edgecl.backends.blas import preload_openblas
from edgecl.errors import EdgeclError

preload_openblas()  # must precede the first `import mlx.core` in the process

import mlx.core as mx  # noqa: E402

ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
OPTIMIZER_STATE = "optimizer.safetensors"


def saved_adapter(directory: Path) -> Path | None:
    """The adapter saved at `directory`, or the previous one that a crash in the middle of
    `save_adapter`'s swap left at `directory.old`; None if there is neither."""
    for path in (directory, directory.with_name(directory.name + ".old")):
        if path.is_dir():
            return path
    return None


def write_adapter(
    directory: Path, weights: dict, optimizer_state: dict | None, config: dict
) -> Path:
    """Write into `directory.tmp`, then swap it in (the previous one waits at `.old` meanwhile:
    saved_adapter falls back to it)."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mx.save_safetensors(str(tmp / ADAPTER_WEIGHTS), weights)
    faults.point("adapter-weights-written")
    if optimizer_state is not None:
        mx.save_safetensors(str(tmp / OPTIMIZER_STATE), optimizer_state)
        faults.point("adapter-optimizer-written")
    (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    faults.point("adapter-config-written")
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
        faults.point("adapter-old-moved")  # only the .old and the .tmp exist here
    tmp.rename(directory)
    faults.point("adapter-swapped")
    shutil.rmtree(old, ignore_errors=True)
    return directory


def read_adapter_config(directory: Path) -> dict:
    path = directory / ADAPTER_CONFIG
    if not path.is_file() or not (directory / ADAPTER_WEIGHTS).is_file():
        raise EdgeclError(
            f"{directory} is not an edgecl adapter (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})"
        )
    return json.loads(path.read_text())
