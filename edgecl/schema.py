"""The run database's tables (SCHEMA) and the MIGRATIONS that take an older file to them
(edgecl.store applies them; `PRAGMA user_version` counts the migrations a file has had)."""

from __future__ import annotations

T, N, R = str, int, float  # TEXT, INTEGER, REAL columns
SCHEMA: dict[str, tuple[dict[str, type], str | tuple[str, ...]]] = {
    "runs": (
        {"name": T, "created": T, "updated": T, "config": T, "status": T, "task": T,
         "adapter_dir": T, "notes": T, "warmup": T},
        "name",
    ),
    "steps": (
        {"run": T, "step": N, "phase": T, "task": T, "tau": R, "lambda_before": R,
         "lambda_after": R, "j_c": R, "j_c_mean": R, "kl": R, "cloud_ratio": R, "mean_reward": R,
         "accuracy": R, "loss": R, "n_help": N, "n_cloud_calls": N, "seconds": R,
         "seconds_sample": R, "seconds_score": R, "seconds_cloud": R, "seconds_grad": R,
         "tokens": N, "tokens_per_s": R, "collapsed": N, "created": T},
        ("run", "step"),
    ),
    "samples": (
        {"run": T, "step": N, "prompt_index": N, "sample_index": N, "item_id": T, "prompt": T,
         "response": T, "composed": T, "help": N, "reward": R, "cost": R, "truncated": N,
         "n_tokens": N},
        ("run", "step", "prompt_index", "sample_index"),
    ),
    "cloud_calls": (
        {"id": N, "run": T, "step": N, "item_id": T, "cloud": T, "simulated": N, "status": T,
         "ok": N, "latency_s": R, "attempts": N, "prompt_tokens": N, "completion_tokens": N,
         "charged": N, "error": T, "created": T, "text": T},
        "id",
    ),
    "evals": (
        {"id": N, "run": T, "adapter": T, "task": T, "split": T, "n": N, "local_acc": R,
         "joint_acc": R, "cloud_ratio": R, "format_violation_rate": R, "mean_tokens": R,
         "created": T, "details": T},
        "id",
    ),
    "learners": (
        {"name": T, "base_model": T, "current": N, "lam": R, "state": T, "created": T,
         "updated": T},
        "name",
    ),
    "adapter_versions": (
        {"learner": T, "version": N, "path": T, "kind": T, "run": T, "step": N, "created": T,
         "details": T},
        ("learner", "version"),
    ),
    "buckets": ({"learner": T, "level": R, "queries": N, "updated": T}, "learner"),
    "ledger": (
        {"id": N, "created": T, "day": T, "source": T, "learner": T, "status": T,
         "reserved_tokens": N, "prompt_tokens": N, "completion_tokens": N, "cost": R, "error": T},
        "id",
    ),
    "exchanges": (
        {"id": N, "created": T, "source": T, "learner": T, "prompt": T, "response": T,
         "help": N, "cloud": N, "reason": T},
        "id",
    ),
    "adaptations": (
        {"id": N, "learner": T, "started": T, "finished": T, "run": T, "exchanges": N,
         "last_exchange": N, "from_version": N, "candidate": N, "promoted": N, "reason": T,
         "details": T},
        "id",
    ),
    "bench_points": (  # edgecl.bench.continual: every task's eval along a job's task sequence
        {"bench": T, "job": T, "method": T, "sequence": T, "seed": N, "step": N, "phase": N,
         "task": T, "n": N, "local_acc": R, "joint_acc": R, "cloud_ratio": R, "created": T},
        ("bench", "job", "step", "task"),
    ),
    "bench_table": (  # its Table 1: per method, task and kind of response
        {"bench": T, "method": T, "task": T, "responses": T, "during": R, "post": R,
         "forgetting": R, "cloud_during": R, "cloud_after": R, "created": T},
        ("bench", "method", "task", "responses"),
    ),
}  # fmt: skip
JSON_COLUMNS = {"config", "details", "warmup", "state"}
# MIGRATIONS[k] takes a database from version k to k + 1; SCHEMA above is the result of them all.
# Append only: a migration that has shipped is never edited.
MIGRATIONS: list[list[str]] = [
    ["ALTER TABLE steps ADD COLUMN j_c_mean REAL"],  # 1: the running-mean cloud ratio
    [  # 2: learners and their published adapter versions
        "CREATE TABLE [learners] ([name] TEXT PRIMARY KEY NOT NULL, [base_model] TEXT, "
        "[current] INTEGER, [lam] FLOAT, [state] TEXT, [created] TEXT, [updated] TEXT)",
        "CREATE TABLE [adapter_versions] ([learner] TEXT NOT NULL, [version] INTEGER NOT NULL, "
        "[path] TEXT, [kind] TEXT, [run] TEXT, [step] INTEGER, [created] TEXT, [details] TEXT, "
        "PRIMARY KEY ([learner], [version]))",
    ],
    [  # 3: answer-time budgets (edgecl.budget), the cloud ledger, and the chat log
        "CREATE TABLE [buckets] ([learner] TEXT PRIMARY KEY NOT NULL, [level] FLOAT, "
        "[queries] INTEGER, [updated] TEXT)",
        "CREATE TABLE [ledger] ([id] INTEGER PRIMARY KEY NOT NULL, [created] TEXT, [day] TEXT, "
        "[source] TEXT, [learner] TEXT, [status] TEXT, [reserved_tokens] INTEGER, "
        "[prompt_tokens] INTEGER, [completion_tokens] INTEGER, [cost] FLOAT, [error] TEXT)",
        "CREATE TABLE [exchanges] ([id] INTEGER PRIMARY KEY NOT NULL, [created] TEXT, "
        "[source] TEXT, [learner] TEXT, [prompt] TEXT, [response] TEXT, [help] INTEGER, "
        "[cloud] INTEGER, [reason] TEXT)",
    ],
    [  # 4: a cloud call's answer, so a replayed step reuses what was paid for
        "ALTER TABLE cloud_calls ADD COLUMN text TEXT",
    ],
    ["ALTER TABLE steps ADD COLUMN kl REAL"],  # 5: mean per-token KL to the run's anchor
    [  # 6: the daemon's adaptation cycles (edgecl.adapt)
        "CREATE TABLE [adaptations] ([id] INTEGER PRIMARY KEY NOT NULL, [learner] TEXT, "
        "[started] TEXT, [finished] TEXT, [run] TEXT, [exchanges] INTEGER, "
        "[last_exchange] INTEGER, [from_version] INTEGER, [candidate] INTEGER, "
        "[promoted] INTEGER, [reason] TEXT, [details] TEXT)",
    ],
    [  # 7: the continual benchmark (edgecl.bench.continual)
        "CREATE TABLE [bench_points] ([bench] TEXT NOT NULL, [job] TEXT NOT NULL, [method] TEXT, "
        "[sequence] TEXT, [seed] INTEGER, [step] INTEGER NOT NULL, [phase] INTEGER, "
        "[task] TEXT NOT NULL, [n] INTEGER, [local_acc] FLOAT, [joint_acc] FLOAT, "
        "[cloud_ratio] FLOAT, [created] TEXT, PRIMARY KEY ([bench], [job], [step], [task]))",
        "CREATE TABLE [bench_table] ([bench] TEXT NOT NULL, [method] TEXT NOT NULL, "
        "[task] TEXT NOT NULL, [responses] TEXT NOT NULL, [during] FLOAT, [post] FLOAT, "
        "[forgetting] FLOAT, [cloud_during] FLOAT, [cloud_after] FLOAT, [created] TEXT, "
        "PRIMARY KEY ([bench], [method], [task], [responses]))",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
INDEXES = [("samples", ["run", "item_id"]), ("cloud_calls", ["run", "step"]), ("evals", ["run"]),
           ("ledger", ["day"])]  # fmt: skip
