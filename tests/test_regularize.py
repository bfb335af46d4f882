"""The KL anchor (mlx_loss.anchored_pg_loss) on a tiny model: zero at the anchor, a pull back
toward it, and the trainer keeps one anchor per run, resumed with it. (That the pull does not
vanish where the policy has left the anchor's support is the stub's test_control.py.)"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
from test_train import make_config, make_trainer, model_dir, task_file  # noqa: F401

from edgecl.backends.base import LoraConfig
from edgecl.backends.mlx_loss import pack, position_logprobs
from edgecl.store import Store
from edgecl.train import run_dir


def _kl(model, anchor: dict, prompts, targets) -> float:
    """Mean per-token KL(pi_anchor || pi) over the targets' positions, full vocabulary."""
    prefix, inputs, positions, _, mask = pack(prompts, targets)
    with model.adapter_weights(anchor):
        ref = position_logprobs(model.model, prefix, inputs, positions)
    own = position_logprobs(model.model, prefix, inputs, positions)
    kl = (mx.exp(ref) * (ref - own)).sum(axis=-1) * mask
    return float(kl.sum() / mask.sum())


def _perturbed(model, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        k: mx.array(rng.normal(0, 0.3, v.shape).astype(np.float32))
        for k, v in model.trainable().items()
    }


def _largest(grads) -> float:
    return max(float(mx.abs(g).max()) for _, g in tree_flatten(grads))


def test_kl_term_is_zero_at_the_anchor_and_pulls_the_policy_back(tiny_model):
    model = tiny_model
    model.attach_lora(LoraConfig(rank=4, alpha=8.0), learning_rate=3e-3, seed=0)
    rng = np.random.default_rng(1)
    prompts = [rng.integers(5, 200, 9).tolist() for _ in range(4)]
    targets = [rng.integers(5, 200, n).tolist() for n in (6, 3, 8, 5)]
    anchor = _perturbed(model, 2)
    model.model.load_weights(list(anchor.items()), strict=False)

    # At the anchor: no KL, and the KL term adds nothing to the gradient.
    zero = [0.0] * 4
    loss, grads = model.policy_gradient(prompts, targets, zero, 8.0, 8, (anchor, [1.0] * 4))
    _, policy = model.policy_gradient(prompts, targets, [1.0] * 4, 8.0)
    assert abs(loss) < 1e-6 and model.anchor_kl < 1e-6
    assert _largest(grads) < 1e-4 * _largest(policy)

    # Moved away (a different adapter), KL-only steps (policy weights 0) bring it back.
    model.model.load_weights(list(_perturbed(model, 3).items()), strict=False)
    kls = [_kl(model, anchor, prompts, targets)]
    for _ in range(15):
        model.policy_gradient_step(prompts, targets, zero, 8.0, 8, anchor=(anchor, [1.0] * 4))
        kls.append(_kl(model, anchor, prompts, targets))
    assert kls[0] > 0.05
    assert kls[-1] < 0.5 * kls[0], kls
    assert abs(model.anchor_kl - kls[-2]) < 1e-3 * kls[-2]  # reported: KL before the last step


def test_trainer_records_kl_and_resumes_with_the_same_anchor(model_dir, task_file):  # noqa: F811
    config = make_config(task_file, "anchored", steps=3)
    trainer = make_trainer(model_dir, config)
    trainer.prepare()
    start = {k: np.array(v) for k, v in trainer.model.trainable().items()}
    trainer.step()
    assert (run_dir("anchored") / "anchor").is_dir()
    for k, v in trainer.anchor.items():  # the adapter DA-GRPO started from
        np.testing.assert_array_equal(np.array(v), start[k])
    first = Store().steps("anchored")[0]["kl"]
    assert first is None or first < 1e-6  # step 1 samples the anchor itself

    resumed = make_trainer(model_dir, config)
    resumed.prepare(resume=True)
    for k, v in resumed.anchor.items():
        np.testing.assert_array_equal(np.array(v), start[k])
    resumed.run()
    kls = [r["kl"] for r in Store().steps("anchored") if r["kl"] is not None]
    assert kls and all(k >= 0 for k in kls)
    assert max(kls) > 1e-4, "after an update the policy has moved off its anchor"

    off = make_trainer(model_dir, make_config(task_file, "no-anchor", steps=1, kl_coef=0.0))
    off.prepare()
    off.run()
    assert off.anchor is None and not (run_dir("no-anchor") / "anchor").exists()
    assert Store().steps("no-anchor")[0]["kl"] is None


def test_rows_without_kl_weight_skip_the_anchors_forward_pass(tiny_model):
    """A micro-batch whose rows all have k_i = 0 (the self-distillation rows) gives the plain
    policy gradient, without running the anchor adapter."""
    model = tiny_model
    model.attach_lora(LoraConfig(rank=4, alpha=8.0), learning_rate=3e-3, seed=0)
    model.model.load_weights(list(_perturbed(model, 3).items()), strict=False)
    rng = np.random.default_rng(2)
    prompts = [rng.integers(5, 200, 9).tolist() for _ in range(4)]
    targets = [rng.integers(5, 200, n).tolist() for n in (6, 3, 8, 5)]
    weights = [1.0, -0.5, 0.25, 2.0]
    anchor, runs = _perturbed(model, 4), []
    swap = model.adapter_weights
    model.adapter_weights = lambda w: (runs.append(1), swap(w))[1]
    # micro-batches of 2: the first has KL weight, the second none
    _, grads = model.policy_gradient(prompts, targets, weights, 8.0, 2, (anchor, [1, 1, 0, 0]))
    assert len(runs) == 1
    head = prompts[:2], targets[:2], weights[:2]
    _, first = model.policy_gradient(*head, 8.0, 2, (anchor, [1, 1]))
    _, second = model.policy_gradient(prompts[2:], targets[2:], weights[2:], 8.0)
    for name, g in tree_flatten(grads):
        expected = dict(tree_flatten(first))[name] + dict(tree_flatten(second))[name]
        np.testing.assert_allclose(np.array(g), np.array(expected), rtol=1e-4, atol=1e-6)
