"""A chat turn with budgeted offloading: the local model answers, and asks the cloud only when it
requests help and the budget allows.

One turn: the local model answers under the protocol's system prompt (streamed). If its answer
is the help trigger, edgecl checks the budget (edgecl.budget: tau per query, daily caps), makes
one cloud call and composes the cloud's answer into the local one (the paper's composition).
If the budget or a cap says no, the cloud is off or unset, or the call fails, the model answers
again with the trigger suppressed, and the turn says why.

    edgecl chat --budget 0.3 --cloud openai:gpt-4o-mini
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgecl.budget import CloudBudget
from edgecl.core.protocol import build_messages, compose, requests_help
from edgecl.store import Store


@dataclass
class Turn:
    answer: str  # the full response shown (composed when the cloud answered)
    local: str  # the local model's own response
    help_requested: bool
    cloud_called: bool = False
    cloud_text: str | None = None
    reason: str | None = None  # why the cloud was not used although help was requested
    fallback: bool = False  # the local model answered again with the trigger suppressed
    tokens: int = 0  # generated locally (the engines stream one piece per token)


@dataclass
class ChatSession:
    engine: object  # edgecl.generation.ChatEngine
    budget: CloudBudget
    cloud: object | None = None  # an edgecl.cloud client, or None
    store: Store | None = None  # logs every exchange unless None (--no-log)
    learner: str = "default"
    max_tokens: int = 256
    temperature: float = 0.0
    context_tokens: int = 2048
    cloud_enabled: bool = True
    threshold: float | None = None  # edgecl.calibration: P(help) a request needs to go out
    source: str = "chat"  # who answers, in the exchange log: chat or daemon
    adapter: str | None = None  # the adapter version's directory (None: the base model)
    history: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=lambda: dict.fromkeys(
        ("turns", "help_requested", "cloud_calls", "local_fallbacks"), 0))  # fmt: skip

    def messages(self, text: str) -> list[dict]:
        """System prompt, as many recent turns as fit the context, and the new message in the
        protocol's user template: the adapter is used the way it was trained."""
        system, user = build_messages("math", text)
        system, user, turns = [system], [user], list(self.history)
        room = self.context_tokens - self.max_tokens
        while turns and self.engine.count_tokens(system + turns + user) > room:
            turns = turns[2:]  # the oldest exchange first
        return system + turns + user

    def turn(self, text: str, on_piece: Callable[[str], None] = lambda p: None,
             on_notice: Callable[[str], None] = lambda n: None) -> Turn:  # fmt: skip
        self.budget.query()
        messages = self.messages(text)
        pieces = self._stream(messages, False, on_piece)
        local = "".join(pieces)
        result = Turn(local, local, requests_help(local), tokens=len(pieces))
        if result.help_requested:
            result.reason = self._ask_cloud(messages, result, on_notice)
            if result.reason is not None:
                on_notice(f"answering locally: {result.reason}")
                result.fallback = True
                pieces = self._stream(messages, True, on_piece)
                result.answer, result.tokens = "".join(pieces), result.tokens + len(pieces)
        self._account(text, result)
        return result

    def _stream(self, messages, suppress: bool, on_piece) -> list[str]:
        pieces = []
        for piece in self.engine.stream(messages, self.max_tokens, self.temperature, suppress):
            pieces.append(piece)
            on_piece(piece)
        return pieces

    def _ask_cloud(self, messages: list[dict], result: Turn, on_notice) -> str | None:
        """Make the one cloud call if allowed; None when it answered, else why not."""
        if not self.cloud_enabled:
            return "the cloud is off (/cloud on)"
        if self.cloud is None:
            return "no cloud is set (--cloud openai:MODEL --cloud-url URL)"
        if self.threshold is not None:
            p = self.engine.help_probability(messages, result.local)
            if p is not None and p < self.threshold:
                return f"the model is not sure enough at tau {self.budget.tau:g} (calibrated)"
        tokens = self.engine.count_tokens(messages) + getattr(self.cloud, "max_tokens", 1024)
        ledger_id, why = self.budget.reserve(tokens)
        if why is not None:
            return why
        on_notice(f"asking the cloud ({self.cloud.name}): {messages[-1]['content']!r}")
        reply = self.cloud.complete(messages)
        self.budget.settle(ledger_id, reply)
        result.cloud_called = True
        if not reply.ok:
            return f"the cloud call failed ({reply.error})"
        result.cloud_text = reply.text
        result.answer = compose(result.local, reply.text)
        return None

    def _account(self, text: str, result: Turn) -> None:
        self.stats["turns"] += 1
        self.stats["help_requested"] += result.help_requested
        self.stats["cloud_calls"] += result.cloud_called
        self.stats["local_fallbacks"] += result.fallback
        self.history += [{"role": "user", "content": text},
                         {"role": "assistant", "content": result.answer}]  # fmt: skip
        if self.store is not None:
            self.store.log_exchange(
                {"source": self.source, "learner": self.learner, "prompt": text,
                 "response": result.answer, "help": int(result.help_requested),
                 "cloud": int(result.cloud_called and result.cloud_text is not None),
                 "reason": result.reason}
            )  # fmt: skip

    def reset(self) -> None:
        self.history.clear()


def open_session(budget: float, cloud: str | None, cloud_url: str | None,
                 cloud_key_env: str | None, backend: str, learner: str, base: bool,
                 model: str | None, max_tokens: int, caps, log: bool = True,
                 source: str = "chat") -> tuple[ChatSession, object]:  # fmt: skip
    """A session on the learner's current adapter (None with `base`), and that adapter's path:
    what `edgecl chat` and `edgecl daemon` answer with."""
    from edgecl import learner as learners
    from edgecl.cloud import make_cloud
    from edgecl.errors import EdgeclError
    from edgecl.generation import load_engine
    from edgecl.models.registry import resolve_model

    resolve_model(model).check_max_tokens(max_tokens)
    store = Store()
    me = learners.load(store, learner)
    adapter = None if base or me is None else learners.version_path(me)
    if cloud is not None and not cloud.startswith("openai"):
        raise EdgeclError(f"answers need a real cloud: --cloud openai:MODEL, not {cloud!r}")
    the_cloud = make_cloud(cloud, base_url=cloud_url, api_key_env=cloud_key_env) if cloud else None
    threshold = None if adapter is None else learners.calibrated_threshold(me, budget)
    session = ChatSession(
        engine=load_engine(backend, model, adapter),
        budget=CloudBudget(store, learner, budget, caps, source=source),
        cloud=the_cloud,
        store=store if log else None,
        learner=learner,
        max_tokens=max_tokens,
        threshold=threshold if backend == "mlx" else None,
        source=source,
        adapter=None if adapter is None else str(adapter),
    )
    return session, adapter
