"""`learn --rollouts llamacpp`: batched multi-sequence sampling on llama.cpp, the adapter synced
every step, and the importance weights that correct for sampling off-policy.

    .venv/bin/python -m pytest tests/test_llamacpp_rollouts.py -q

The tiny float32 model and its float32 GGUF (float32 KV cache, no flash attention: it moves
this random model's log-probs by up to 0.05) compute the same distribution, so greedy tokens
agree exactly and the sampled tokens' log-probs agree with MLX's teacher-forced ones to float
tolerance.
"""

from __future__ import annotations

import edgecl.backends.blas

edgecl.backends.blas.preload_openblas()

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from test_learn_cli import sums_task  # noqa: E402

from conftest import run_cli  # noqa: E402
from edgecl.backends.base import LoraConfig  # noqa: E402
from edgecl.backends.llamacpp_batch import BatchedLlamaCpp, LlamaCppRollouts  # noqa: E402
from edgecl.backends.mlx_loss import IMPORTANCE_CAP  # noqa: E402
from edgecl.store import Store  # noqa: E402

PROMPTS = [[1, 504, 1234, 88, 7], [1, 42, 900, 3301], [1, 7, 7, 7, 7, 7, 2000]]


def _same(mlx_outs, llama_outs) -> None:
    assert [o.prompt_index for o in llama_outs] == [o.prompt_index for o in mlx_outs]
    assert [o.token_ids for o in llama_outs] == [o.token_ids for o in mlx_outs]
    assert [o.finish_reason for o in llama_outs] == [o.finish_reason for o in mlx_outs]


def test_greedy_batches_agree_with_mlx_and_stops_end_rows(
    tiny_model, tiny_gguf, capfd, monkeypatch
):
    from llama_cpp import _logger

    monkeypatch.setattr(_logger.logger, "level", 0)  # as in a process with no Llama(verbose=False)
    engine = BatchedLlamaCpp(tiny_gguf, n_threads=1, f32_kv_cache=True, flash_attn=False)
    try:
        mlx_outs = tiny_model.sample(PROMPTS, 2, 12, temperature=0.0)
        capfd.readouterr()
        llama_outs = engine.sample(PROMPTS, 2, 12, 0.0, eos_ids=tiny_model.eos_ids,
                                   decode=tiny_model.decode)  # fmt: skip
        assert capfd.readouterr().err == ""  # no context's ~1000 log lines, no graph lines
        _same(mlx_outs, llama_outs)
        assert len({tuple(o.token_ids) for o in mlx_outs}) == 3  # the prompts differ
        # A token the first prompt's greedy reply emits at its 4th step ends those rows there.
        end = mlx_outs[0].token_ids[3]
        tiny_model.eos_ids = {end}
        mlx_outs = tiny_model.sample(PROMPTS, 2, 12, temperature=0.0)
        llama_outs = engine.sample(PROMPTS, 2, 12, 0.0, eos_ids={end}, decode=tiny_model.decode)
        _same(mlx_outs, llama_outs)
        assert llama_outs[0].finish_reason == "eos" and len(llama_outs[0].token_ids) <= 4
        assert any(o.finish_reason == "length" for o in llama_outs)  # the others ran on
    finally:
        engine.close()


def test_sampled_logprobs_follow_the_synced_adapter(tiny_model, tiny_gguf):
    """T=1 samples through the trainer's sampler: log-probs equal MLX's teacher-forced ones of
    the same tokens under the adapter as trained so far, so the export reached llama.cpp."""
    tiny_model.attach_lora(LoraConfig(rank=4), learning_rate=0.05)
    ids = [[5, 6, 7, 8], [9, 10, 11, 12]]
    tiny_model.policy_gradient_step([PROMPTS[0]] * 2, ids, [1.0, -1.0], 8.0)  # B becomes non-zero
    assert max(float(mx.abs(v).max()) for k, v in tree_flatten(tiny_model.trainable())
               if "lora_b" in k) > 1e-3  # fmt: skip
    sampler = LlamaCppRollouts(
        tiny_model, tiny_gguf, n_threads=1, f32_kv_cache=True, flash_attn=False
    )
    try:
        outs = sampler.sample(PROMPTS, 3, 10, temperature=1.0, seed=4)
    finally:
        sampler.close()
    assert len({tuple(o.token_ids) for o in outs}) == 9  # T=1 draws, all different
    teacher = tiny_model.sequence_logprobs([PROMPTS[o.prompt_index] for o in outs],
                                           [o.token_ids for o in outs])  # fmt: skip
    for o, lp in zip(outs, teacher):
        np.testing.assert_allclose(o.logprobs, lp, atol=2e-4)


def test_importance_weights_scale_the_gradient(tiny_model):
    """Samples the policy itself drew (behaviour = its own log-probs) leave the gradient as it
    was; a far less likely sampler caps every token's weight at C; rows without a behaviour
    (self-distillation rows) keep weight 1."""
    tiny_model.attach_lora(LoraConfig(rank=4), learning_rate=0.05)
    tiny_model.policy_gradient_step([PROMPTS[0]] * 2, [[5, 6, 7], [9, 10]], [1.0, -1.0], 5.0)
    prompts, targets, weights = [PROMPTS[1]] * 2, [[3, 4, 5, 6], [8, 9, 10]], [0.5, -1.0]
    own = [lp.tolist() for lp in tiny_model.sequence_logprobs(prompts, targets)]

    def grad(behaviour):
        _, g = tiny_model.policy_gradient(prompts, targets, weights, 7.0, behaviour=behaviour)
        return np.concatenate([np.array(v).ravel() for _, v in tree_flatten(g)])

    plain = grad(None)
    tol = {"rtol": 1e-3, "atol": 1e-5 * np.abs(plain).max()}  # own log-probs: a separate pass
    assert np.abs(plain).max() > 0
    np.testing.assert_allclose(grad(own), plain, **tol)
    np.testing.assert_allclose(grad([None, None]), plain, **tol)
    far = [[x - 5.0 for x in row] for row in own]
    np.testing.assert_allclose(grad(far), IMPORTANCE_CAP * plain, **tol)
    half = [[x + np.log(2.0) for x in row] for row in own]  # mu twice pi: weight 1/2
    np.testing.assert_allclose(grad(half), 0.5 * plain, **tol)


def test_learn_with_llamacpp_rollouts(tmp_path, edgecl_home, tiny_mlx_dir):
    """The CLI path: a run samples on llama.cpp, trains, checkpoints and resumes on it."""
    task = sums_task(tmp_path, 20)
    options = "--budget 0.3 --steps 2 --batch-size 2 --group-size 2 --max-tokens 8"
    args = ["learn", "--task", str(task), "--model", str(tiny_mlx_dir), *options.split(),
            "--warmup-steps", "0", "--rollouts", "llamacpp", "--run-name", "lc"]  # fmt: skip
    result = run_cli(*args, home=edgecl_home)
    assert result.returncode == 0, result.stderr
    assert "rollouts on llamacpp" in result.stdout
    store = Store()
    assert [s["step"] for s in store.steps("lc")] == [1, 2]
    assert store.get_run("lc")["config"]["rollouts"] == "llamacpp"
    assert len(store.samples("lc")) == 8
    result = run_cli("learn", "--run-name", "lc", "--resume", "--rollouts", "mlx",
                     home=edgecl_home)  # fmt: skip
    assert result.returncode == 1 and "drop --rollouts" in result.stdout + result.stderr
