"""The DA-GRPO trainer on a tiny model: exact resume, eq. 8's gradient, the dual update as
stored, one cloud call per help-seeking group, cloud failures, collapse flag."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from conftest_server import llama_server  # noqa: F401
from mlx.utils import tree_flatten

from edgecl.backends.mlx_backend import MLXModel
from edgecl.config import Phase, TrainConfig
from edgecl.store import Store
from edgecl.train import Trainer
from edgecl.warmup import stored_warmup


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    """Sums: a third 'hard' (demonstrated as help requests)."""
    rows = []
    for i in range(30):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append(
            {
                "prompt": f"What is {a} + {b}?",
                "answer": str(a + b),
                "difficulty": "hard" if i % 3 == 0 else "easy",
            }
        )
    path = tmp_path_factory.mktemp("task") / "sums.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.fixture(scope="module")
def model_dir(tiny_mlx_dir, task_file, tmp_path_factory):
    """The tiny model taught the protocol, so that its samples include real help requests."""
    from edgecl.tasks.registry import get_task
    from tiny_model import make_protocol_tiny

    return make_protocol_tiny(
        tiny_mlx_dir, tmp_path_factory.mktemp("protocol") / "mlx", get_task(str(task_file))
    )


def make_config(task_file, name, steps=5, **overrides) -> TrainConfig:
    settings = dict(
        run_name=name,
        phases=[Phase(str(task_file), "0.2", steps)],
        batch_size=2,
        group_size=4,
        max_tokens=40,
        lr=5e-3,
        dual_lr=0.5,
        lambda_init=0.5,
        seed=3,
        lora_rank=4,
        lora_alpha=8,
        warmup_steps=2,
        help_steps=2,
        ability_items=4,
        ability_k=2,
        warmup_batch_size=4,
        warmup_lr=1e-3,
        probe_size=4,
        format_threshold=1.01,  # always run the (short) warm-up code path
        fresh=True,  # each run from the base model (tests/test_learner.py: continuing)
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def make_trainer(model_dir, config, store=None) -> Trainer:
    return Trainer(config, MLXModel.load(model_dir, "tiny-protocol"), store or Store())


def train(model_dir, config, store=None) -> Trainer:
    """A trainer on the tiny model that has run all its steps."""
    trainer = make_trainer(model_dir, config, store)
    trainer.prepare()
    trainer.run()
    return trainer


def adapter_bytes(trainer) -> dict:
    return {k: np.array(v).tobytes() for k, v in trainer.model.trainable().items()}


def test_exact_resume(model_dir, task_file):
    straight = make_trainer(model_dir, make_config(task_file, "straight"))
    straight.prepare()
    seen = []
    for _ in range(5):
        straight.step()
        r = straight.last_rollout
        seen.append(([c.token_ids for c in r.completions], r.rewards, straight.state.lam))
    assert any(0 < sum(c is not None for c in s[1]) for s in seen)

    first = make_trainer(model_dir, make_config(task_file, "split"))
    first.prepare()
    for _ in range(3):
        first.step()
    del first  # the process "dies" after step 3
    resumed = make_trainer(model_dir, make_config(task_file, "split"))
    resumed.prepare(resume=True)
    assert resumed.state.step == 3
    for step in range(3, 5):
        resumed.step()
        r = resumed.last_rollout
        assert [c.token_ids for c in r.completions] == seen[step][0]
        assert r.rewards == seen[step][1]
        assert resumed.state.lam == seen[step][2]
    assert adapter_bytes(resumed) == adapter_bytes(straight)
    opt_a = dict(tree_flatten(straight.model.optimizer.state))
    opt_b = dict(tree_flatten(resumed.model.optimizer.state))
    assert all(np.array(opt_a[k]).tobytes() == np.array(opt_b[k]).tobytes() for k in opt_a)
    store = Store()
    assert [s["lambda_after"] for s in store.steps("split")] == [x[2] for x in seen]


def test_warmup_is_stored_and_reused(model_dir, task_file, tmp_path):
    """A second run with the same model, task and warm-up settings loads the stored warm-up
    (the same adapter, no probe, no steps); other settings, another task file or `rewarm`
    warm up again."""

    def start(name, rewarm=False, config=None):
        events = []
        trainer = Trainer(
            config or make_config(task_file, name),
            MLXModel.load(model_dir, "tiny-protocol"),
            Store(),
            on_event=lambda kind, data: events.append(kind),
        )
        trainer.prepare(rewarm=rewarm)
        return trainer, events

    first, events = start("first")
    assert first.state.warmup["ran"] and "warmup" in events and "warmup_reused" not in events
    stored = stored_warmup(first.model.fingerprint, first.config)
    assert stored.is_dir() and first.state.warmup["made"]

    second, events = start("second")
    assert events == ["warmup_reused"]
    assert second.state.warmup["reused"] == str(stored)
    assert second.state.warmup["probe_after"] == first.state.warmup["probe_after"]
    assert adapter_bytes(second) == adapter_bytes(first)
    assert Store().get_run("second")["warmup"]["reused"] == str(stored)

    third, events = start("third", config=make_config(task_file, "third", warmup_steps=3))
    assert "warmup_reused" not in events
    assert stored_warmup(third.model.fingerprint, third.config) != stored
    copy = tmp_path / "sums.jsonl"
    copy.write_text(task_file.read_text() + "\n" + json.dumps({"prompt": "1 + 1?", "answer": "2"}))
    fourth, events = start("fourth", config=make_config(copy, "fourth"))
    assert "warmup_reused" not in events
    assert stored_warmup(fourth.model.fingerprint, fourth.config) != stored
    fifth, events = start("fifth", rewarm=True)
    assert "warmup_reused" not in events and "warmup" in events
    assert "reused" not in fifth.state.warmup


def test_stored_lambda_follows_dual_update_and_one_call_per_group(model_dir, task_file):
    train(model_dir, make_config(task_file, "dual", steps=4))
    store = Store()
    steps = store.steps("dual")
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    lam = 0.5
    total_help = 0
    for row in steps:
        samples = store.samples("dual", step=row["step"])
        assert len(samples) == 2 * 4
        j_c = float(np.mean([s["cost"] for s in samples]))
        assert row["lambda_before"] == lam
        lam = max(0.0, lam + 0.5 * (j_c - 0.2))
        assert row["lambda_after"] == pytest.approx(lam, abs=1e-12)
        groups_asking = {s["prompt_index"] for s in samples if s["help"]}
        calls = [c for c in store.cloud_calls("dual") if c["step"] == row["step"]]
        assert len(calls) == len(groups_asking) == row["n_cloud_calls"]
        total_help += len(groups_asking)
    assert total_help > 0, "the protocol-trained tiny model asks for help on some prompts"


def test_gradient_equals_eq8_by_hand(model_dir, task_file, cpu_device):
    """The trainer's micro-batched, shared-prefix gradient equals eq. 8 summed sample by sample.

    In float64, exact to the float32 roundoff of MLX's fused norms (gamma(hidden), numerics.py):
    a missing G/(G-1) (25% at G=4) or a flipped sign is many orders of magnitude above it."""
    from numerics import gamma, rel_err, to_float64

    trainer = make_trainer(model_dir, make_config(task_file, "grad", batch_size=3))
    trainer.prepare()
    to_float64(trainer.model)
    rollout = trainer.rollout(0, 0)
    lam, g, n_prompts = 0.7, 4, 3
    prompts = [rollout.prompt_ids[c.prompt_index] for c in rollout.completions]
    ids = [c.token_ids for c in rollout.completions]
    normalizer = trainer.config.max_tokens
    _, grads = trainer.model.policy_gradient(
        prompts, ids, trainer.weights(rollout, lam), normalizer
    )
    # Eq. 8 by hand: G/(G-1) * sum_i grad log pi(y_i|x) * (A_r - lam * A_c), batch-averaged.
    r = np.array(rollout.rewards).reshape(n_prompts, g)
    c = np.array(rollout.costs).reshape(n_prompts, g)
    adv = (r - r.mean(1, keepdims=True)) - lam * (c - c.mean(1, keepdims=True))
    assert np.abs(adv).max() > 0, "need a rollout with some signal"
    by_hand = None
    for i, a in enumerate(adv.ravel()):
        _, g_i = trainer.model.policy_gradient([prompts[i]], [ids[i]], [-1.0], 1.0)
        term = {k: v * (g / (g - 1) * a / n_prompts / normalizer) for k, v in tree_flatten(g_i)}
        by_hand = term if by_hand is None else {k: by_hand[k] + term[k] for k in term}
    ours = {k: -np.array(v) for k, v in tree_flatten(grads)}  # the loss is the negative objective
    tol = gamma(trainer.model.config["hidden_size"])
    for k, v in by_hand.items():
        assert ours[k].dtype == np.float64
        assert rel_err(ours[k], v) < tol, k
        assert rel_err(ours[k] * (g - 1) / g, v) > 1000 * tol  # the bound sees a lost G/(G-1)
    assert max(float(mx.abs(v).max()) for v in by_hand.values()) > 0


def test_baselines_train_with_their_own_reward_weights_and_cloud(model_dir, task_file):
    """grpo-hier, gapg and gvpo (one step each) and edge-only (two) through the real trainer:
    lambda stays 0, the step row's reward is the method's, edge-only never calls the cloud
    and its warm-up has no help phase; GVPO's log-ratio to the base model is 0 on a fresh
    LoRA (B = 0), so its weights there are beta x centred r / (G - 1) / prompts."""
    from edgecl.core.methods import get_method, gvpo_weights, rewards_and_costs
    from edgecl.rollout import log_ratios

    store = Store()
    for method in ("grpo-hier", "gapg", "gvpo", "edge-only"):
        steps = 2 if method == "edge-only" else 1
        config = make_config(task_file, method, steps=steps, method=method)
        trainer = train(model_dir, config, store)
        rows = store.steps(method)
        assert [r["lambda_after"] for r in rows] == [0.0] * steps, method
        # assist() of a finished run: its last step's task (benchmarks/step.py asks for it)
        r, _ = rewards_and_costs(get_method(method), trainer.last_rollout.scores, trainer.assist())
        assert rows[-1]["mean_reward"] == pytest.approx(r.mean()), method
    assert "help" not in store.get_run("edge-only")["warmup"]  # format only
    assert "help" in store.get_run("gapg")["warmup"]
    assert store.cloud_calls("edge-only") == [] and store.cloud_calls("gapg")
    assert all(s["cost"] == 1.0 for s in store.samples("edge-only") if s["help"])  # eq. 14 kept
    assert all(r["j_c"] == 0.0 for r in store.steps("edge-only"))  # but nothing was paid

    trainer = make_trainer(model_dir, make_config(task_file, "gvpo-0", warmup_steps=0,
                                                  method="gvpo"))  # fmt: skip
    trainer.prepare()
    rollout = trainer.rollout(0, 0)
    assert np.abs(log_ratios(trainer.model, rollout)).max() < 1e-4
    r, _ = rewards_and_costs(get_method("gvpo"), rollout.scores, 0.2)
    assert np.abs(r).max() > 0
    assert trainer.weights(rollout, 0.5) == pytest.approx(gvpo_weights(r, np.zeros(8), 4), abs=1e-6)


def test_replay_mixes_earlier_tasks_prompts_in(model_dir, task_file, tmp_path):
    """da-grpo+replay over sums then products: phase 1 has no pool yet; in phase 2 half of
    each batch is sums items sampled in phase 1; a later run of the learner on products
    replays sums from the earlier run too."""
    import json as _json

    from edgecl.tasks.registry import get_task

    products = tmp_path / "products.jsonl"
    products.write_text("".join(_json.dumps({"prompt": f"What is {a} * {a + 2}?",
                        "answer": str(a * (a + 2))}) + "\n" for a in range(1, 31)))  # fmt: skip
    sums = {it.id for it in get_task(str(task_file)).items("train")}
    prods = {it.id for it in get_task(str(products)).items("train")}
    phases = [Phase(str(task_file), "0.2", 2), Phase(str(products), "0.2", 2)]
    config = make_config(task_file, "replay", phases=phases, method="da-grpo+replay", replay=0.5,
                         learner="replayer")  # fmt: skip
    assert config.replay == 0.5
    train(model_dir, config)
    store = Store()

    def origins(run, step):
        ids = {s["prompt_index"]: s["item_id"] for s in store.samples(run, step=step)}
        return ["sums" if i in sums else "products" if i in prods else "?" for i in ids.values()]

    assert origins("replay", 1) == origins("replay", 2) == ["sums", "sums"]
    assert origins("replay", 3) == origins("replay", 4) == ["products", "sums"]
    later = make_config(products, "later", steps=1, method="da-grpo+replay", learner="replayer",
                        fresh=False)  # fmt: skip
    assert later.replay == 0.25  # the default share
    train(model_dir, later)
    assert origins("later", 1) == ["products", "sums"]  # 0.25 of 2 prompts: at least one


def test_failed_cloud_calls_are_logged_and_training_goes_on(model_dir, task_file):
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = {"base_url": f"http://127.0.0.1:{port}/v1", "model": "x", "max_retries": 1,
               "backoff_s": 0.01}  # fmt: skip
    train(model_dir, make_config(task_file, "refused", steps=3, cloud="openai",
                                 cloud_options=options))  # fmt: skip
    store = Store()
    assert len(store.steps("refused")) == 3
    calls = store.cloud_calls("refused")
    assert calls and all(
        c["status"] == "refused" and not c["ok"] and not c["charged"] for c in calls
    )
    for s in store.samples("refused"):
        if s["help"] and s["cost"] == 1.0:
            assert s["reward"] == 0.0  # asked, got nothing: no reward, still charged to J_c


def test_collapse_is_flagged_in_the_store(tiny_mlx_dir, task_file):
    config = make_config(
        task_file, "collapse", steps=2, warmup_steps=0, lambda_init=0.0, collapse_window=1
    )
    train(tiny_mlx_dir, config)
    rows = Store().steps("collapse")
    # An untrained tiny model never asks; tau > 0 and lambda stays 0: the C.1 failure.
    assert [r["n_help"] for r in rows] == [0, 0]
    assert [r["collapsed"] for r in rows] == [1, 1]


def test_training_with_a_real_openai_compatible_cloud(model_dir, task_file, llama_server):  # noqa: F811
    """The cloud is llama.cpp's OpenAI-compatible server on 127.0.0.1 (the bundled model)."""
    config = make_config(
        task_file,
        "server",
        steps=1,
        cloud="openai",
        cloud_options={
            "base_url": llama_server,
            "model": "smollm2",
            "max_tokens": 16,
            "timeout_s": 120,
        },
    )
    train(model_dir, config)
    calls = Store().cloud_calls("server")
    assert calls and all(c["ok"] and c["status"] == "ok" and c["charged"] for c in calls)
    assert all(c["completion_tokens"] > 0 and c["latency_s"] > 0 for c in calls)
    helped = [s for s in Store().samples("server") if s["help"]]
    assert helped and all(s["composed"] != s["response"] for s in helped)


@pytest.mark.parametrize("point", ["cloud-called", "step-rows-written"])
def test_a_kill_after_a_paid_call_loses_no_call_and_pays_none_twice(
    point,
    model_dir,
    task_file,
    llama_server,  # noqa: F811
):
    """learn is killed right after its first real cloud call returned (before the step's rows),
    or after a step's rows and before its checkpoint. --resume replays the step: every call
    made is in the log once, and answers already paid for are reused, not asked for again
    (the server's own request log)."""
    import os

    from conftest_server import _server

    from conftest import run_cli

    def requests() -> int:
        return open(_server["log"], errors="replace").read().count("POST /v1/chat/completions")

    home, run = os.environ["EDGECL_HOME"], f"killed-{point}"
    args = ["learn", "--task", str(task_file), "--model", str(model_dir), "--budget", "0.2",
            "--steps", "2", "--batch-size", "2", "--group-size", "4", "--max-tokens", "40",
            "--warmup-steps", "0", "--seed", "3", "--cloud", "openai:smollm2",
            "--cloud-url", llama_server, "--run-name", run]  # fmt: skip
    before = requests()
    killed = run_cli(*args, home=home, env={"EDGECL_KILL_AT": point})
    assert killed.returncode == -9
    first = Store().cloud_calls(run)
    assert first and {c["step"] for c in first} == {1} and all(c["text"] for c in first)
    assert requests() == before + len(first)
    resumed = run_cli("learn", "--run-name", run, "--resume", home=home)
    assert resumed.returncode == 0, resumed.stderr
    calls = Store().cloud_calls(run)
    assert [c["id"] for c in calls[: len(first)]] == [c["id"] for c in first]  # kept
    assert len({(c["step"], c["item_id"]) for c in calls}) == len(calls)  # each paid once
    assert requests() == before + len(calls)  # what was paid for was not asked for again
    assert [s["step"] for s in Store().steps(run)] == [1, 2]
    answer = {c["item_id"]: c["text"] for c in calls if c["step"] == 1}
    replayed = [s for s in Store().samples(run, step=1) if s["help"]]
    assert replayed and all(answer[s["item_id"]] in s["composed"] for s in replayed)


def test_lambda_starts_by_the_rule_after_the_warm_up(model_dir, task_file):
    from edgecl.core.dual import initial_lambda

    trainer = make_trainer(model_dir, make_config(task_file, "auto-lambda", lambda_init=None))
    trainer.prepare()
    help_rate = trainer.state.warmup["probe_after"]["help"]
    assert trainer.state.lam == initial_lambda(0.2, help_rate)
    row = trainer.step()
    assert row["lambda_before"] == initial_lambda(0.2, help_rate)
