"""Everything a run records, in one SQLite file (WAL, so `report` can read while `learn` writes).

A training step's row, its samples (the replay log) and its cloud calls are written in one
transaction, so a crash leaves either the whole step or none of it; `truncate_after` drops
steps newer than the checkpoint a resumed run restarts from.

The schema (edgecl/schema.py) is versioned with `PRAGMA user_version`: a new database gets
SCHEMA at once, an older one runs the MIGRATIONS it has not had, both in one transaction, so two
processes opening an old file at the same time migrate it once (tests/data/store_v0.db predates
the first migration).
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from edgecl import paths
from edgecl.errors import EdgeclError
from edgecl.schema import INDEXES, JSON_COLUMNS, MIGRATIONS, SCHEMA, SCHEMA_VERSION


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """The run database at `path` (default: paths.db_path(), under EDGECL_HOME)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else paths.db_path()
        if not self.path.exists():  # this user's only: it holds the chat log (SQLite's -wal and
            self.path.touch(mode=0o600)  # -shm files take the database's mode)
        self.db = sqlite_utils.Database(self.path)
        self.db.execute("PRAGMA busy_timeout = 10000")
        self._enable_wal()
        self._migrate()

    def _enable_wal(self) -> None:
        """WAL mode, once per database. Switching to it needs the database to itself and SQLite
        reports "locked" at once rather than waiting, which two ranks opening a new data dir
        together hit about one time in three; so wait here."""
        for attempt in range(100):
            try:
                return self.db.enable_wal()  # a no-op once the database is in WAL mode
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 99:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")  # one process at a time decides and does it
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise EdgeclError(
                    f"{self.path} was written by a newer edgecl (schema {version}, this one "
                    f"knows {SCHEMA_VERSION}): upgrade edgecl"
                )
            if "runs" not in self.db.table_names():
                version = SCHEMA_VERSION  # a new database: the current schema at once
                for table, (columns, pk) in SCHEMA.items():
                    self.db[table].create(columns, pk=pk, not_null=_not_null(pk))
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    if not self._done(sql):
                        conn.execute(sql)
            for table, columns in INDEXES:
                self.db[table].create_index(columns, if_not_exists=True)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _done(self, sql: str) -> bool:
        """Whether a migration statement's change is already there (a database written by a
        development version between two migrations): its table, or its column, exists."""
        words = sql.replace("[", "").replace("]", "").split()
        if words[:2] == ["CREATE", "TABLE"]:
            return words[2] in self.db.table_names()
        if words[:2] == ["ALTER", "TABLE"] and words[3:5] == ["ADD", "COLUMN"]:
            return words[5] in self.db[words[2]].columns_dict
        return False

    def close(self) -> None:
        self.db.close()

    # runs
    def create_run(self, name: str, config: dict, task: str, **fields: Any) -> dict:
        if self.get_run(name) is not None:
            raise EdgeclError(f"run {name!r} exists: pass --resume or choose another --name")
        row = {"name": name, "created": now(), "updated": now(), "config": config,
               "task": task, "status": "running", **fields}  # fmt: skip
        self._add("runs", [row])
        return self.get_run(name)  # type: ignore[return-value]

    def get_run(self, name: str) -> dict | None:
        rows = self._rows("SELECT * FROM runs WHERE name = ?", [name])
        return rows[0] if rows else None

    def list_runs(self) -> list[dict]:
        return self._rows("SELECT * FROM runs ORDER BY created, name")

    def update_run(self, name: str, **fields: Any) -> dict:
        _check_columns("runs", fields)
        if self.get_run(name) is None:
            raise EdgeclError(f"no run named {name!r}: see `edgecl report --runs`")
        fields = {k: _encode(k, v) for k, v in {**fields, "updated": now()}.items()}
        sets = ", ".join(f"[{k}] = ?" for k in fields)
        with self.db.conn:
            self.db.conn.execute(f"UPDATE runs SET {sets} WHERE name = ?", [*fields.values(), name])
        return self.get_run(name)  # type: ignore[return-value]

    # training steps
    def record_step(
        self, run: str, step_row: dict, sample_rows: list[dict], cloud_rows: list[dict]
    ) -> None:
        """Write a step, its samples and its cloud calls in one transaction (all or nothing)."""
        step = int(step_row["step"])
        calls = [_call_row(run, step, row) for row in cloud_rows]
        with self.db.conn:  # commits on success, rolls back on any exception
            _insert(self.db.conn, "steps", [{"created": now(), **step_row, "run": run}])
            _insert(self.db.conn, "samples", [{**r, "run": run, "step": step} for r in sample_rows])
            # a call logged when it was made (log_call) has its id: the same row, written again
            _insert(self.db.conn, "cloud_calls", calls, "INSERT OR REPLACE")

    def log_call(self, run: str, step: int, row: dict) -> int:
        """Log one cloud call the moment it was made, before its step's rows: a kill in between
        loses no call, and the replayed step finds its answer (`paid_answer`). Returns its id."""
        return self._add("cloud_calls", [_call_row(run, step, row)])

    def steps(self, run: str) -> list[dict]:
        return self._rows("SELECT * FROM steps WHERE run = ? ORDER BY step", [run])

    def step_seconds(self, like: dict, limit: int = 20) -> list[float]:
        """Seconds of the newest steps of runs alike in model, batch, G, tokens, task, sampler."""
        keys = ("model", "batch_size", "group_size", "max_tokens", "phases[0].task")
        match = " AND ".join(f"json_extract(r.config, '$.{k}') IS ?" for k in keys)
        sql = (  # runs from before --rollouts sampled on MLX
            f"SELECT s.seconds FROM steps s JOIN runs r ON r.name = s.run WHERE {match} AND "
            "COALESCE(json_extract(r.config, '$.rollouts'), 'mlx') = ? "
            "ORDER BY s.created DESC, s.step DESC LIMIT ?"
        )
        known = [*map(like.get, keys[:-1]), (like.get("phases") or [{}])[0].get("task")]
        return [r[0] for r in self.db.execute(sql, [*known, like.get("rollouts", "mlx"), limit])]

    def last_step(self, run: str) -> int | None:
        return self.db.execute("SELECT MAX(step) FROM steps WHERE run = ?", [run]).fetchone()[0]

    def samples(self, run: str, step: int | None = None) -> list[dict]:
        where, args = ("run = ?", [run]) if step is None else ("run = ? AND step = ?", [run, step])
        order = "step, prompt_index, sample_index"
        return self._rows(f"SELECT * FROM samples WHERE {where} ORDER BY {order}", args)

    def cloud_calls(self, run: str) -> list[dict]:
        return self._rows("SELECT * FROM cloud_calls WHERE run = ? ORDER BY step, id", [run])

    def truncate_after(self, run: str, step: int) -> int:
        """Delete the steps and samples of `run` newer than `step` (a resume replays them);
        returns how many steps went. Cloud calls stay: they were made (and paid for), and the
        replay reuses their answers (`paid_answer`)."""
        with self.db.conn:
            gone = self.db.conn.execute(
                "DELETE FROM steps WHERE run = ? AND step > ?", [run, step]
            ).rowcount
            self.db.conn.execute("DELETE FROM samples WHERE run = ? AND step > ?", [run, step])
        return gone

    def paid_answer(self, run: str, step: int, item_id: str) -> str | None:
        """The answer of a successful cloud call already made at `step` for `item_id`."""
        row = self.db.execute(
            "SELECT text FROM cloud_calls WHERE run = ? AND step = ? AND item_id = ? AND ok = 1 "
            "AND text IS NOT NULL ORDER BY id LIMIT 1",
            [run, step, item_id],
        ).fetchone()
        return row[0] if row else None

    # evaluations
    def record_eval(self, row: dict) -> int:
        return self._add("evals", [{"created": now(), **row}])

    def evals(self, run: str | None = None, task: str | None = None) -> list[dict]:
        where = {k: v for k, v in {"run": run, "task": task}.items() if v is not None}
        sql = "SELECT * FROM evals" + (" WHERE " if where else "")
        sql += " AND ".join(f"{k} = ?" for k in where) + " ORDER BY id"
        return self._rows(sql, list(where.values()))

    # learners and adapter versions (edgecl.learner)
    def get_learner(self, name: str) -> dict | None:
        rows = self._rows("SELECT * FROM learners WHERE name = ?", [name])
        return rows[0] if rows else None

    def save_learner(self, row: dict) -> None:
        """Insert or replace the learner row `row` (its `name` is the key)."""
        self._add("learners", [{**row, "updated": now()}], "INSERT OR REPLACE")

    def add_version(self, row: dict) -> None:
        """Record a published adapter version (edgecl.learner.publish numbers it)."""
        self._add("adapter_versions", [{"created": now(), **row}])

    def versions(self, learner: str) -> list[dict]:
        sql = "SELECT * FROM adapter_versions WHERE learner = ? ORDER BY version"
        return self._rows(sql, [learner])

    # the chat log (the workload the daemon will learn from)
    def log_exchange(self, row: dict) -> None:
        self._add("exchanges", [{"created": now(), **row}])

    def exchanges(self, learner: str | None = None) -> list[dict]:
        return self._of_learner("exchanges", learner)

    def add_adaptation(self, row: dict) -> int:
        """Record one adaptation cycle of the daemon (edgecl.adapt); returns its id."""
        return self._add("adaptations", [row])

    def adaptations(self, learner: str | None = None) -> list[dict]:
        return self._of_learner("adaptations", learner)

    def _of_learner(self, table: str, learner: str | None) -> list[dict]:
        where = "" if learner is None else "WHERE learner = ? "
        return self._rows(f"SELECT * FROM {table} {where}ORDER BY id", [learner] * bool(where))

    def save_bench(self, bench: str, points: list[dict], table: list[dict]) -> None:
        """Store a benchmark's eval points and table rows (again: the newer replace them)."""
        with self.db.conn:
            for name, rows in (("bench_points", points), ("bench_table", table)):
                rows = [{"created": now(), **r, "bench": bench} for r in rows]
                _insert(self.db.conn, name, rows, "INSERT OR REPLACE")

    def bench(self, bench: str) -> tuple[list[dict], list[dict]]:
        """A benchmark's (eval points, table rows)."""
        points, table = (self._rows(f"SELECT * FROM {t} WHERE bench = ? ORDER BY rowid", [bench])
                         for t in ("bench_points", "bench_table"))  # fmt: skip
        return points, table

    def purge_exchanges(self, before: str | None = None) -> int:
        """Delete logged exchanges (all, or those created before the ISO time `before`)."""
        with self.db.conn:
            if before is None:
                cur = self.db.conn.execute("DELETE FROM exchanges")
            else:
                cur = self.db.conn.execute("DELETE FROM exchanges WHERE created < ?", [before])
        return cur.rowcount

    def _add(self, table: str, rows: list[dict], verb: str = "INSERT") -> int:
        with self.db.conn:
            return _insert(self.db.conn, table, rows, verb)

    def _rows(self, sql: str, args: list | None = None) -> list[dict]:
        rows = list(self.db.query(sql, args or []))
        for row in rows:
            for key in JSON_COLUMNS & row.keys():
                if row[key] is not None:
                    row[key] = json.loads(row[key])
        return rows


def _call_row(run: str, step: int, row: dict) -> dict:
    row = {"created": now(), **row, "run": run, "step": step}
    row["charged"] = int(bool(row.get("ok")) and bool(row.get("charged", True)))
    return row


def _not_null(pk: str | tuple[str, ...]) -> set[str]:
    return {pk} if isinstance(pk, str) else set(pk)


def _check_columns(table: str, row: dict) -> None:
    unknown = set(row) - set(SCHEMA[table][0])
    if unknown:
        raise ValueError(f"{table} has no column(s) {sorted(unknown)}")


def _encode(key: str, value: Any) -> Any:
    if key in JSON_COLUMNS and value is not None:
        return json.dumps(value, sort_keys=True)
    return int(value) if isinstance(value, bool) else value


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict], verb: str = "INSERT") -> int:
    """Plain INSERTs inside the caller's transaction (sqlite-utils 3's insert_all commits)."""
    last = 0
    for row in rows:
        _check_columns(table, row)
        cols = ", ".join(f"[{k}]" for k in row)
        marks = ", ".join("?" for _ in row)
        values = [_encode(k, v) for k, v in row.items()]
        last = conn.execute(f"{verb} INTO {table} ({cols}) VALUES ({marks})", values).lastrowid
    return last or 0
