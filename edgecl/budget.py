"""The cloud budget at answer time: a token bucket of tau per query, optional daily caps, and
the ledger of every call, all in SQLite so they hold across restarts and processes.

The bucket (one per learner) holds at most BURST = 1 cloud call. Each query adds tau to it; a
cloud call takes 1. It starts full when tau > 0 (so the first query of a session may use the
cloud) and empty at tau = 0 (never). Over any N queries the calls are at most 1 + tau x N.

Caps (optional, per UTC day, over every process on this data dir): calls, tokens, and money at
a price per 1k tokens. A call reserves its prompt plus max_tokens before it is sent, inside one
`BEGIN IMMEDIATE` transaction, and is settled to its real usage after; a failed call is logged
and not charged (its bucket token comes back). So two processes at once never exceed a cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from edgecl.store import Store, now

BURST = 1.0


@dataclass(frozen=True)
class Caps:
    calls_per_day: int | None = None
    tokens_per_day: int | None = None
    money_per_day: float | None = None
    price_per_1k: float = 0.0  # money per 1000 tokens (prompt + completion)


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


class CloudBudget:
    """tau and caps for one learner's answers (chat, and the daemon later)."""

    def __init__(self, store: Store, learner: str, tau: float, caps: Caps = Caps(), source="chat"):
        self.store, self.learner, self.tau, self.caps, self.source = (
            store,
            learner,
            tau,
            caps,
            source,
        )

    def _bucket(self, conn) -> float:
        row = conn.execute("SELECT level FROM buckets WHERE learner = ?", [self.learner]).fetchone()
        return row[0] if row else (BURST if self.tau > 0 else 0.0)

    def _set_bucket(self, conn, level: float, queries: int = 0) -> None:
        conn.execute(
            "INSERT INTO buckets (learner, level, queries, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(learner) DO UPDATE SET level = excluded.level, "
            "queries = queries + excluded.queries, updated = excluded.updated",
            [self.learner, level, queries, now()],
        )

    def query(self) -> None:
        """A query arrived: the bucket earns tau (up to BURST)."""
        with _immediate(self.store) as conn:
            self._set_bucket(conn, min(BURST, self._bucket(conn) + self.tau), queries=1)

    def reserve(self, tokens: int) -> tuple[int | None, str | None]:
        """(ledger id, None) if a call of up to `tokens` tokens may go out now, else (None, why)."""
        with _immediate(self.store) as conn:
            level = self._bucket(conn)
            if level < 1.0:
                why = "the budget is 0" if self.tau <= 0 else f"over budget (tau {self.tau:g})"
                return None, why
            calls, used = self._today(conn)
            c = self.caps
            if c.calls_per_day is not None and calls + 1 > c.calls_per_day:
                return None, f"the daily cap of {c.calls_per_day} cloud calls is reached"
            if c.tokens_per_day is not None and used + tokens > c.tokens_per_day:
                return None, f"the daily cap of {c.tokens_per_day} cloud tokens is reached"
            if (
                c.money_per_day is not None
                and (used + tokens) * c.price_per_1k / 1000 > c.money_per_day
            ):
                return None, f"the daily cap of {c.money_per_day:g} in cloud spend is reached"
            self._set_bucket(conn, level - 1.0)
            cur = conn.execute(
                "INSERT INTO ledger (created, day, source, learner, status, reserved_tokens) "
                "VALUES (?, ?, ?, ?, 'reserved', ?)",
                [now(), today(), self.source, self.learner, tokens],
            )
            return cur.lastrowid, None

    def settle(self, ledger_id: int, reply) -> None:
        """Record the call's real usage; a failed call is not charged (its token comes back)."""
        tokens = reply.prompt_tokens + reply.completion_tokens
        with _immediate(self.store) as conn:
            conn.execute(
                "UPDATE ledger SET status = ?, prompt_tokens = ?, completion_tokens = ?, "
                "cost = ?, error = ? WHERE id = ?",
                ["ok" if reply.ok else "failed", reply.prompt_tokens, reply.completion_tokens,
                 tokens * self.caps.price_per_1k / 1000 if reply.ok else 0.0,
                 None if reply.ok else reply.error, ledger_id],
            )  # fmt: skip
            if not reply.ok:
                self._set_bucket(conn, min(BURST, self._bucket(conn) + 1.0))

    def _today(self, conn) -> tuple[int, int]:
        """Calls and tokens charged today (reserved calls count their reservation)."""
        row = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'reserved' THEN reserved_tokens "
            "ELSE prompt_tokens + completion_tokens END), 0) FROM ledger "
            "WHERE day = ? AND status != 'failed'",
            [today()],
        ).fetchone()
        return int(row[0]), int(row[1])

    def state(self) -> dict:
        conn = self.store.db.conn
        calls, used = self._today(conn)
        row = conn.execute(
            "SELECT queries FROM buckets WHERE learner = ?", [self.learner]
        ).fetchone()
        return {
            "tau": self.tau,
            "bucket": round(self._bucket(conn), 4),
            "burst": BURST,
            "queries": row[0] if row else 0,
            "calls_today": calls,
            "tokens_today": used,
            "caps": {k: v for k, v in vars(self.caps).items() if v is not None},
        }


class _immediate:
    """`with _immediate(store) as conn:` one write transaction that other processes wait for."""

    def __init__(self, store: Store) -> None:
        self.conn = store.db.conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.conn.commit()
        else:
            self.conn.rollback()
