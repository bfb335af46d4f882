"""The run database: WAL, all-or-nothing steps, round trips, truncation for resume."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgecl import paths
from edgecl.cloud.base import CloudReply
from edgecl.config import TrainConfig
from edgecl.errors import EdgeclError
from edgecl.store import SCHEMA_VERSION, Store


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path))
    store = Store()
    yield store
    store.close()


def step_row(step: int, lam: float = 0.5) -> dict:
    return {"step": step, "phase": "dagrpo", "task": "math", "tau": 0.3,
            "lambda_before": lam, "lambda_after": lam + 0.01, "j_c": 0.4, "cloud_ratio": 0.4,
            "mean_reward": 0.25, "accuracy": 0.5, "loss": -0.1, "n_help": 3, "n_cloud_calls": 1,
            "seconds": 10.0, "seconds_sample": 8.0, "seconds_score": 0.5, "seconds_cloud": 1.0,
            "seconds_grad": 0.5, "tokens": 512, "tokens_per_s": 64.0,
            "collapsed": False}  # fmt: skip


def sample_rows(n: int = 4) -> list[dict]:
    return [{"prompt_index": 0, "sample_index": k, "item_id": "q1", "prompt": "2+2?",
             "response": "<think>...", "composed": "<think>...", "help": k % 2 == 1,
             "reward": 1.0, "cost": float(k % 2), "truncated": False, "n_tokens": 20}
            for k in range(n)]  # fmt: skip


def cloud_rows(ok: bool = True) -> list[dict]:
    reply = CloudReply("x", ok=ok, status="ok" if ok else "timeout", latency_s=0.2, attempts=1)
    return [{"item_id": "q1", "cloud": "reference (simulated)", **reply.log_fields()}]


def test_file_location_and_wal(store, tmp_path):
    assert store.path == paths.db_path() == tmp_path / "edgecl.db"
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = {c.name: c.type for c in store.db["steps"].columns}
    assert columns["lambda_after"] in ("REAL", "FLOAT") and columns["step"] == "INTEGER"
    assert store.db["steps"].pks == ["run", "step"]


def _open_store(path, errors, start):
    start.wait()  # all at once
    try:
        Store(path)
    except Exception as e:  # noqa: BLE001 - reported to the parent
        errors.put(repr(e))


def test_processes_opening_a_new_database_together_all_get_it(tmp_path):
    """Ranks of `learn --ranks 2` open a new data dir's database at once; switching it to WAL
    made SQLite answer "database is locked" at once to some of them (2-9 of 30 pairs here)."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    errors = fork.Queue()
    for i in range(20):
        start = fork.Barrier(3)
        procs = [fork.Process(target=_open_store, args=(tmp_path / f"{i}.db", errors, start))
                 for _ in range(3)]  # fmt: skip
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        assert [p.exitcode for p in procs] == [0, 0, 0]
    assert errors.empty(), errors.get()
    assert Store(tmp_path / "0.db").db.journal_mode == "wal"


def test_the_data_dir_and_database_are_this_users_only(tmp_path, monkeypatch):
    import stat

    monkeypatch.setenv("EDGECL_HOME", str(tmp_path / "new" / "home"))
    store = Store()
    store.create_run("r", {"x": 1}, "math")  # a write: the -wal and -shm files exist now
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(paths.data_dir()) == 0o700
    for name in ("edgecl.db", "edgecl.db-wal", "edgecl.db-shm"):
        assert mode(paths.data_dir() / name) == 0o600, name


def test_runs_round_trip(store):
    run = store.create_run("r1", {"G": 8, "budget": 0.3}, task="math:0.3,code:0.5")
    assert run["config"] == {"G": 8, "budget": 0.3} and run["status"] == "running"
    with pytest.raises(EdgeclError, match="--resume"):
        store.create_run("r1", {}, task="math")
    store.create_run("r2", {}, task="code", notes="second")
    assert [r["name"] for r in store.list_runs()] == ["r1", "r2"]
    run = store.update_run("r1", status="done", adapter_dir="/a/b", config={"G": 4})
    assert (run["status"], run["adapter_dir"], run["config"]) == ("done", "/a/b", {"G": 4})
    assert store.get_run("nope") is None
    with pytest.raises(ValueError):
        store.update_run("r1", colour="red")


def test_step_round_trip(store):
    store.create_run("r", {}, task="math")
    store.record_step("r", step_row(1), sample_rows(), cloud_rows())
    store.record_step("r", step_row(2), sample_rows(), cloud_rows(ok=False))
    steps = store.steps("r")
    assert [s["step"] for s in steps] == [1, 2] and steps[0]["lambda_after"] == 0.51
    assert steps[0]["collapsed"] == 0 and steps[0]["created"]
    assert store.last_step("r") == 2 and store.last_step("other") is None
    samples = store.samples("r", step=2)
    assert [s["sample_index"] for s in samples] == [0, 1, 2, 3] and samples[1]["help"] == 1
    assert len(store.samples("r")) == 8
    calls = store.cloud_calls("r")
    assert [(c["step"], c["ok"], c["charged"], c["status"]) for c in calls] == [
        (1, 1, 1, "ok"),
        (2, 0, 0, "timeout"),  # a failed call is logged but never charged
    ]


def test_step_write_is_all_or_nothing(store):
    store.create_run("r", {}, task="math")
    store.record_step("r", step_row(1), sample_rows(), cloud_rows())
    duplicate = sample_rows() + sample_rows(1)  # the last sample row breaks the primary key
    with pytest.raises(sqlite3.IntegrityError):
        store.record_step("r", step_row(2), duplicate, cloud_rows())
    bad_call = cloud_rows() + [{"item_id": "q1", "status": object()}]  # fails on the last row
    with pytest.raises(sqlite3.Error):
        store.record_step("r", step_row(2), sample_rows(), bad_call)
    with pytest.raises(ValueError):
        store.record_step("r", step_row(2), sample_rows(), [{"no_such_column": 1}])
    assert [s["step"] for s in store.steps("r")] == [1]
    assert {s["step"] for s in store.samples("r")} == {1} and len(store.samples("r")) == 4
    assert [c["step"] for c in store.cloud_calls("r")] == [1]
    store.record_step("r", step_row(2), sample_rows(), cloud_rows())  # the retry then works
    assert store.last_step("r") == 2


def test_a_second_connection_sees_committed_steps_only(store):
    store.create_run("r", {}, task="math")
    store.record_step("r", step_row(1), sample_rows(), cloud_rows())
    reader = Store(store.path)
    assert [s["step"] for s in reader.steps("r")] == [1]
    reader.close()


def test_truncate_after_keeps_the_cloud_calls_made(store):
    store.create_run("r", {}, task="math")
    store.create_run("other", {}, task="math")
    for step in range(1, 6):
        store.record_step("r", step_row(step), sample_rows(2), cloud_rows())
    store.record_step("other", step_row(5), sample_rows(2), cloud_rows())
    assert store.truncate_after("r", 3) == 2
    assert [s["step"] for s in store.steps("r")] == [1, 2, 3]
    assert {s["step"] for s in store.samples("r")} == {1, 2, 3}
    assert [c["step"] for c in store.cloud_calls("r")] == [1, 2, 3, 4, 5]  # calls made stay
    assert store.last_step("other") == 5  # other runs are untouched
    store.record_step("r", step_row(4, lam=0.9), sample_rows(2), cloud_rows())
    assert store.steps("r")[-1]["lambda_before"] == 0.9


def test_evals_round_trip(store):
    first = store.record_eval({"run": "r", "adapter": "a1", "task": "math", "split": "test",
                               "n": 100, "local_acc": 0.4, "joint_acc": 0.7, "cloud_ratio": 0.3,
                               "format_violation_rate": 0.02, "mean_tokens": 80.5,
                               "details": {"per_item": [1, 0]}})  # fmt: skip
    second = store.record_eval({"run": "r", "task": "code", "n": 10, "local_acc": 0.1})
    assert second > first
    assert [e["task"] for e in store.evals(run="r")] == ["math", "code"]
    (row,) = store.evals(task="math")
    assert row["details"] == {"per_item": [1, 0]} and row["joint_acc"] == 0.7 and row["created"]
    assert store.evals(run="none") == []


def test_step_seconds_come_from_runs_with_the_same_settings(store):
    small = {"model": None, "batch_size": 4, "group_size": 8, "max_tokens": 128, "lr": 1e-4}
    for name, config, seconds in (
        ("a", small, [50.0, 40.0]),
        ("b", {**small, "lr": 2e-4}, [30.0]),  # other settings that do not change a step's cost
        ("c", {**small, "max_tokens": 64}, [5.0]),
        ("d", {**small, "model": "other"}, [7.0]),
        ("e", {**small, "rollouts": "llamacpp"}, [3.0]),  # runs without the key sampled on MLX
        ("f", {**small, "phases": [{"task": "code-easy", "steps": 9}]}, [60.0]),
    ):
        store.create_run(name, config, "math")
        for step, s in enumerate(seconds, 1):
            store.record_step(name, {**step_row(step), "seconds": s}, [], [])
    assert sorted(store.step_seconds(small)) == [30.0, 40.0, 50.0]
    assert sorted(store.step_seconds({**small, "rollouts": "mlx"})) == [30.0, 40.0, 50.0]
    assert store.step_seconds({**small, "rollouts": "llamacpp"}) == [3.0]
    assert store.step_seconds({**small, "max_tokens": 64}) == [5.0]
    assert store.step_seconds({**small, "batch_size": 2}) == []
    assert len(store.step_seconds(small, limit=2)) == 2
    code = {**small, "phases": [{"task": "code-easy", "steps": 50, "budget": "0.3"}]}
    assert store.step_seconds(code) == [60.0]  # the task, not its steps or budget


FIXTURE_V0 = Path(__file__).parent / "data" / "store_v0.db"  # written by edgecl before migrations


def test_a_database_from_before_the_first_migration_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE_V0, path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 0
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [s["lambda_after"] for s in store.steps("old-run")] == [0.51, 0.52]
    assert store.steps("old-run")[0]["j_c_mean"] is None
    assert len(store.samples("old-run")) == 8 and len(store.cloud_calls("old-run")) == 2
    assert store.evals()[0]["details"] == {"seed": 0}
    assert TrainConfig.from_dict(store.get_run("old-run")["config"]).dual_lr == 0.01
    store.record_step("new", {"step": 1, "j_c": 0.25, "j_c_mean": 0.25}, [], [])
    assert store.steps("new")[0]["j_c_mean"] == 0.25
    store.close()
    assert Store(path).steps("new")[0]["j_c_mean"] == 0.25  # opening again changes nothing


def test_two_processes_migrate_an_old_database_once(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE_V0, path)
    code = "import sys; from edgecl.store import Store; Store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)]) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert Store(path).steps("old-run")[1]["j_c_mean"] is None


def test_a_database_from_a_newer_edgecl_is_refused_in_one_line(tmp_path):
    path = tmp_path / "future.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(EdgeclError, match="newer edgecl .* upgrade edgecl"):
        Store(path)


def test_migrated_and_new_databases_have_the_same_tables_and_columns(tmp_path):
    shutil.copy(FIXTURE_V0, tmp_path / "old.db")
    old, new = Store(tmp_path / "old.db"), Store(tmp_path / "new.db")

    def shape(store):
        tables = sorted(t for t in store.db.table_names() if not t.startswith("sqlite"))
        return {t: sorted(store.db[t].columns_dict) for t in tables}

    assert shape(old) == shape(new)
    assert {"learners", "adapter_versions"} <= shape(new).keys()


def test_a_database_that_already_has_a_migrations_change_is_still_upgraded(tmp_path):
    """A database written between two migrations by a development version (user_version 0, yet
    steps.j_c_mean already there) upgrades without a 'duplicate column' error."""
    path = tmp_path / "dev.db"
    shutil.copy(FIXTURE_V0, path)
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE steps ADD COLUMN j_c_mean REAL")
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.steps("old-run")[0]["j_c_mean"] is None
