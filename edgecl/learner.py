"""A learner that lives on across runs: its base model, its published adapter versions, the one
current version, and lambda (carried across tasks, as in the paper) with tau per task.

    edgecl learn --task math --budget 0.3       # learner "default": starts from its current version
    edgecl learn --task qa --budget 0.3         # the next task: from math's adapter and lambda
    edgecl learn --task math --learner work --fresh    # another learner, from the base model
    edgecl status                               # the learner at a glance
    edgecl adapters list | use N | rollback

A version is a directory `learners/NAME/versions/NNNN` with the adapter weights and config (no
optimizer state: training checkpoints stay with their run). It is written under a temporary
name and renamed into place, so no reader sees half of one, and never changed afterwards.
The learner's row in SQLite holds the current version; `use` and `rollback` move it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgecl import faults, paths
from edgecl.errors import EdgeclError
from edgecl.store import Store, now

DEFAULT = "default"
FILES = ("adapters.safetensors", "adapter_config.json")  # what a version keeps of an adapter


@dataclass
class Learner:
    name: str
    base_model: str
    current: int | None = None
    lam: float | None = None  # None until a run has finished: the run's --lambda-init then
    taus: dict[str, str] = field(default_factory=dict)  # task -> its latest budget
    history: list[int] = field(default_factory=list)  # earlier current versions, for rollback
    calibration: dict = field(default_factory=dict)  # edgecl.calibration, for one version

    def row(self) -> dict:
        state = {"taus": self.taus, "history": self.history, "calibration": self.calibration}
        return {"name": self.name, "base_model": self.base_model, "current": self.current,
                "lam": self.lam, "state": state}  # fmt: skip


def versions_dir(name: str) -> Path:
    return paths.data_dir() / "learners" / name / "versions"


def load(store: Store, name: str) -> Learner | None:
    row = store.get_learner(name)
    if row is None:
        return None
    state = row["state"] or {}
    return Learner(
        row["name"], row["base_model"], row["current"], row["lam"],
        state.get("taus", {}), state.get("history", []), state.get("calibration", {}),
    )  # fmt: skip


def ensure(store: Store, name: str, base_model: str) -> Learner:
    """The learner `name`, created for `base_model` if it does not exist yet."""
    learner = load(store, name)
    if learner is None:
        learner = Learner(name, base_model)
        store.save_learner({**learner.row(), "created": now()})
    elif learner.base_model != base_model:
        raise EdgeclError(
            f"learner {name!r} learns on {learner.base_model}, not {base_model}: "
            f"use --learner ANOTHER_NAME for this model"
        )
    return learner


def calibrated_threshold(learner: Learner | None, tau: float) -> float | None:
    """The P(help) threshold for tau from the learner's calibration, if it was measured on
    its current version with today's score; else None (no suppression beyond the budget)."""
    from edgecl.calibration import SCORE, threshold

    c = learner.calibration if learner else {}
    if not c or c.get("version") != learner.current or c.get("score") != SCORE:
        return None
    return threshold(c["asked_scores"], c["n_items"], tau)


def save(store: Store, learner: Learner) -> None:
    created = (store.get_learner(learner.name) or {}).get("created") or now()
    store.save_learner({**learner.row(), "created": created})


def version_path(learner: Learner, version: int | None = None) -> Path | None:
    """The directory of `version` (default: the current one), or None if there is none."""
    version = learner.current if version is None else version
    return None if version is None else versions_dir(learner.name) / f"{version:04d}"


def publish(
    store: Store, learner: Learner, adapter: Path, kind: str, run: str | None, step: int,
    details: dict | None = None, make_current: bool = True,
) -> int:  # fmt: skip
    """Copy the adapter in `adapter` into a new immutable version and make it current (unless
    not `make_current`: a candidate that the daemon's gate decides on, edgecl.adapt)."""
    root = versions_dir(learner.name)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a writer that was killed
        if not process_alive(int(stale.name.split("-")[1])):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in FILES:
        shutil.copyfile(adapter / name, tmp / name)
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    faults.point("publish-before-rename")
    taken = {int(p.name) for p in root.iterdir() if p.name.isdigit()}
    taken |= {v["version"] for v in store.versions(learner.name)}
    version = max(taken, default=0) + 1
    while True:  # the rename is the commit: atomic, and it fails if another writer got there
        try:
            tmp.rename(root / f"{version:04d}")
            break
        except OSError:
            version += 1
    store.add_version(
        {"learner": learner.name, "version": version, "path": str(root / f"{version:04d}"),
         "kind": kind, "run": run, "step": step, "details": details or {}}
    )  # fmt: skip
    if make_current:
        use(store, learner, version)
    return version


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs (someone else's counts; our own unreaped zombie not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:  # not our child: kill(pid, 0) said it runs
        return True


def use(store: Store, learner: Learner, version: int) -> None:
    """Make `version` current (remembering the one before, for rollback)."""
    known = {v["version"] for v in store.versions(learner.name)}
    if version not in known:
        listed = ", ".join(map(str, sorted(known))) or "none yet"
        raise EdgeclError(f"learner {learner.name!r} has no version {version} (it has: {listed})")
    if learner.current is not None and learner.current != version:
        learner.history.append(learner.current)
    learner.current = version
    save(store, learner)


def rollback(store: Store, learner: Learner) -> int:
    """Make the previous current version current again; returns it."""
    if not learner.history:
        raise EdgeclError(f"learner {learner.name!r} has no earlier version to roll back to")
    learner.current = learner.history.pop()
    save(store, learner)
    return learner.current


def start(store: Store, config, model) -> tuple[Learner, Path | None]:
    """The learner of a new run, and the version it starts from (None: the base model)."""
    learner = ensure(store, config.learner, model.name)
    if config.fresh or learner.current is None:
        return learner, None
    return learner, version_path(learner)


def finish(store: Store, config, checkpoint: Path, step: int, lam: float) -> int:
    """Publish a finished run's adapter as the learner's new current version and keep its lambda
    and budgets for the next run; with `config.promote` off, only as a candidate version."""
    learner = load(store, config.learner)
    for version in store.versions(config.learner):  # resumed after it was published: once only
        if (version["run"], version["step"], version["kind"]) == (config.run_name, step, "run"):
            return version["version"]
    if config.promote:
        learner.lam = lam
        learner.taus.update({p.task: p.budget for p in config.phases})
    details = {"tasks": [p.task for p in config.phases], "lambda": lam}
    return publish(store, learner, checkpoint, "run", config.run_name, step, details,
                   make_current=config.promote)  # fmt: skip
