"""Seconds per DA-GRPO step (sampling / scoring / cloud / gradient) vs mlx-lm-lora's GRPO step.

    python benchmarks/step.py                     # 2 steps each: 4 prompts x G=8 x 128 tokens
    python benchmarks/step.py --steps 1 --their-iters 1 --max-tokens 32    # a quick look
    python benchmarks/step.py --skip-theirs       # edgecl only
    python benchmarks/step.py --rollouts llamacpp # edgecl sampling on llama.cpp (learn's option)
    python benchmarks/step.py --ranks 2           # edgecl data parallel, a core each (learn's)

edgecl: the real bundled model, `math` task, reference cloud, LoRA rank 8 on every layer,
lr 1e-4, no warm-up, a Trainer in a temporary EDGECL_HOME; prints each step's row timings.
Without warm-up the model rarely follows the protocol, so a step often has equal rewards in
every group and the trainer (correctly) skips the gradient update; the benchmark then times
that update on the same rollout with stand-in weights (`seconds_grad_forced`) and compares
`seconds_step` = row seconds + forced update, since mlx-lm-lora always takes its update.

mlx-lm-lora (PyPI `mlx-lm-lora` 5.10.x): its GRPO trainer on the same converted MLX model dir
(float32 safetensors), the same 4 prompts (edgecl's system prompt and user turn, written as a
local train.jsonl), group 8, 128 completion tokens, LoRA rank 8 on every layer, batch 4 prompts,
temperature 1.0, beta 0 (no KL, no reference-model pass: DA-GRPO has none either). It runs in
its own venv so its pins leave ours alone:

    python3 -m venv /tmp/lora-venv && /tmp/lora-venv/bin/pip install mlx-lm-lora "mlx[cpu]"

as a subprocess with LD_PRELOAD=OpenBLAS (edgecl preloads it itself), through a small driver
that calls `mlx_lm_lora.train.main()` and times its rollout and reward functions; its step time
comes from its own training report (iterations_per_second), so model load is not counted.

Prints one JSON line per measured step and a final JSON line with the ratio
(mlx-lm-lora seconds per step / edgecl seconds per step; > 1 means edgecl is faster).
Each line carries the 1-minute load average: the box is small and often shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from gemm import gemm_gflops

OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
MARK = "EDGECL_BENCH "

# Runs inside mlx-lm-lora's venv. Wraps (does not change) its rollout and reward functions to
# time them, and takes each iteration's seconds from its own report callback.
DRIVER = textwrap.dedent(
    """
    import json, sys, time

    import mlx.core as mx

    def blas_gflops():
        a = mx.random.normal((1024, 1024)); mx.eval(a @ a)
        start = time.perf_counter(); mx.eval(a @ a)
        return 2 * 1024**3 / (time.perf_counter() - start) / 1e9

    def emit(kind, **data):
        print("EDGECL_BENCH " + json.dumps({"kind": kind, **data}), flush=True)

    from importlib.metadata import version

    import mlx_lm_lora.train as train
    import mlx_lm_lora.trainer.grpo_trainer as grpo
    from mlx_lm.tuner.callbacks import TrainingCallback

    emit("info", version=version("mlx-lm-lora"), mlx=version("mlx"), mlx_lm=version("mlx-lm"),
         blas_gflops=round(blas_gflops(), 1))

    timing = {"sample": 0.0, "score": 0.0, "tokens": 0}
    generate, rewards = grpo.generate_grpo, grpo._rollout_rewards

    def timed_generate(*args, **kwargs):
        start = time.perf_counter()
        completions, texts, indices = generate(*args, **kwargs)
        mx.eval(completions)
        timing["sample"] += time.perf_counter() - start
        timing["tokens"] += sum(int(c.size) for c in completions)
        return completions, texts, indices

    def timed_rewards(*args, **kwargs):
        start = time.perf_counter()
        out = rewards(*args, **kwargs)
        mx.eval(out[0])
        timing["score"] += time.perf_counter() - start
        return out

    grpo.generate_grpo, grpo._rollout_rewards = timed_generate, timed_rewards

    class Report(TrainingCallback):
        def on_train_loss_report(self, info):
            seconds = 1.0 / info["iterations_per_second"]
            emit("iteration", iteration=info["iteration"], seconds=seconds,
                 seconds_sample=timing["sample"], seconds_score=timing["score"],
                 seconds_grad=seconds - timing["sample"] - timing["score"],
                 tokens=timing["tokens"], loss=info["train_loss"],
                 peak_memory_gb=info["peak_memory"])
            timing.update(sample=0.0, score=0.0, tokens=0)

    run = train.run
    train.run = lambda args, training_callback=None: run(args, training_callback=Report())
    sys.argv = ["mlx_lm_lora.train", *sys.argv[1:]]
    train.main()
    """
)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def blas_gflops() -> float:
    import mlx.core as mx

    a = mx.random.normal((1024, 1024))
    mx.eval(a @ a)
    start = time.perf_counter()
    mx.eval(a @ a)
    return 2 * 1024**3 / (time.perf_counter() - start) / 1e9


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def run_ours(args, entry, home: Path) -> tuple[list[dict], list]:
    """edgecl's Trainer on the bundled model; returns the step rows and the batch's items.
    Under `--ranks N` every rank runs this (rank 0 speaks); the update's GFLOP/s (4 x parameters
    per token, each prompt once) is against the ranks' summed GEMM rate, measured at once."""
    os.environ["EDGECL_HOME"] = str(home)  # store, runs and checkpoints go here
    from mlx.utils import tree_flatten

    from edgecl.backends.distributed import World
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.config import Phase, TrainConfig
    from edgecl.train import Trainer

    config = TrainConfig(
        run_name="bench-step",
        phases=[Phase("math", args.budget, args.steps)],
        batch_size=args.prompts,
        group_size=args.group_size,
        max_tokens=args.max_tokens,
        lr=1e-4,
        lora_rank=8,
        lora_alpha=16.0,
        lora_layers=-1,
        cloud="reference",
        warmup_steps=0,
        kl_coef=0.0,  # as mlx-lm-lora's beta 0: no reference-model pass
        rollouts=args.rollouts,
    )
    start = time.perf_counter()
    world = World.init()
    say = emit if world.is_main else lambda row: None
    model = MLXModel.load(entry.mlx_dir, entry.name)
    params = sum(v.size for _, v in tree_flatten(model.model.parameters()))
    trainer = Trainer(config, model, world=world)
    trainer.prepare()
    gemm = float(world.sum(np.array([gemm_gflops()]))[0])
    say(
        {
            "impl": "edgecl",
            "kind": "setup",
            "ranks": world.size,
            "seconds_load_prepare": round(time.perf_counter() - start, 2),
            "blas_gflops": round(blas_gflops(), 1),
            "gemm_gflop_s": round(gemm, 1),
            "load": load(),
        }
    )
    items = trainer.batch(0, 0)  # the first step's prompts: mlx-lm-lora gets the same
    rows = []
    import mlx.core as mx

    for _ in range(args.steps):
        mx.reset_peak_memory()
        start = time.perf_counter()
        row = trainer.step()
        wall = time.perf_counter() - start  # + checkpoint write and SQLite row
        keys = ("seconds_sample", "seconds_score", "seconds_cloud", "seconds_grad", "seconds")
        out = {"impl": "edgecl", "kind": "step", "step": row["step"]}
        out.update({k: round(row[k], 3) for k in keys})
        out.update(
            tokens=row["tokens"],
            seconds_with_checkpoint=round(wall, 3),
            n_help=row["n_help"],
            n_cloud_calls=row["n_cloud_calls"],
            load=load(),
        )
        lam = row["lambda_before"]
        out["grad_skipped"] = not np.any(trainer.weights(trainer.last_rollout, lam))
        out["seconds_step"] = out["seconds"]
        if out["grad_skipped"]:
            # Every group had equal shaped rewards (the untrained model usually fails the format
            # in all 32 samples), so the trainer rightly took no gradient step. mlx-lm-lora steps
            # regardless; for a like-for-like step time, take the same update here on this
            # rollout with zero-mean stand-in weights and add its time.
            forced = _forced_grad(trainer, model)
            out.update(seconds_grad_forced=round(forced, 3), load=load())
            out["seconds_step"] = round(out["seconds"] + forced, 3)
        out["peak_memory_gb"] = round(mx.get_peak_memory() / 1e9, 2)  # as mlx-lm-lora reports
        rollout = trainer.last_rollout
        tokens = sum(map(len, rollout.prompt_ids)) + sum(
            len(o.token_ids) for o in rollout.completions
        )
        update = out.get("seconds_grad_forced") or out["seconds_grad"]
        out["update_fraction_of_gemm"] = round(4 * params * tokens / update / 1e9 / gemm, 3)
        say(out)
        rows.append(out)
    return rows, items


def _forced_grad(trainer, model) -> float:
    """Seconds of the step's policy-gradient update (as Trainer.step calls it) on the last
    rollout, with weights +-1/n_prompts alternating within each group."""
    c, rollout, world = trainer.config, trainer.last_rollout, trainer.world
    mine = set(world.share(len(rollout.items)))  # each rank: its own groups, as Trainer.step
    rows = [o for o in rollout.completions if o.prompt_index in mine]
    weights = np.where(np.arange(len(rows)) % 2 == 0, 1.0, -1.0) / c.batch_size
    start = time.perf_counter()
    model.policy_gradient_step(
        [rollout.prompt_ids[o.prompt_index] for o in rows],
        [o.token_ids for o in rows],
        weights,
        normalizer=c.max_tokens,
        micro_batch=c.micro_batch,
        world=world,
    )
    return float(world.sum(np.array([time.perf_counter() - start]))[0]) / world.size


def write_dataset(items, directory: Path) -> None:
    """mlx-lm-lora's GRPO format: {prompt, answer, system} lines in train.jsonl."""
    from edgecl.core.protocol import build_messages

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "train.jsonl", "w") as f:
        for item in items:
            system, user = build_messages("math", item.question)
            line = {"prompt": user["content"], "answer": item.answer, "system": system["content"]}
            f.write(json.dumps(line) + "\n")


def run_theirs(args, entry, items, work: Path) -> tuple[list[dict], str | None]:
    """mlx-lm-lora's GRPO trainer in its own venv; returns its iteration rows or an error."""
    python = Path(args.lora_python)
    if not python.is_file():
        return [], f"{python} not found: python3 -m venv /tmp/lora-venv && ... (see docstring)"
    data = work / "data"
    write_dataset(items, data)
    (work / "driver.py").write_text(DRIVER)
    # fuse: false keeps it from writing a merged model after training (not timed anyway).
    (work / "config.yaml").write_text(
        "fuse: false\nlora_parameters: {rank: 8, dropout: 0.0, scale: 2.0}\n"
    )
    command = [
        str(python), str(work / "driver.py"),
        "--model", entry.mlx_dir, "--train", "--train-mode", "grpo", "--train-type", "lora",
        "--data", str(data), "--batch-size", str(args.prompts),
        "--iters", str(args.their_iters), "--group-size", str(args.group_size),
        "--max-completion-length", str(args.max_tokens), "--num-layers", "-1",
        "--learning-rate", "1e-4", "--temperature", "1.0", "--beta", str(args.their_beta),
        "--steps-per-report", "1", "--steps-per-eval", "100000", "--save-every", "100000",
        "--adapter-path", str(work / "adapters"), "--seed", "0", "-c", str(work / "config.yaml"),
    ]  # fmt: skip
    env = dict(os.environ, LD_PRELOAD=OPENBLAS, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("EDGECL_HOME", None)
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=work
    )
    rows, tail = [], []
    for line in proc.stdout:
        if MARK not in line:  # tqdm's carriage returns can share a line with the marker
            tail = (tail + [line.rstrip()])[-40:]
            if args.verbose:
                print(line.rstrip(), file=sys.stderr)
            continue
        data = json.loads(line[line.index(MARK) + len(MARK) :])
        kind = data.pop("kind")
        if kind == "info":
            emit({"impl": "mlx-lm-lora", "kind": "setup", **data, "load": load()})
            continue
        out = {"impl": "mlx-lm-lora", "kind": "step", "step": data.pop("iteration")}
        out.update({k: round(v, 3) if isinstance(v, float) else v for k, v in data.items()})
        out.update(seconds_step=out["seconds"], load=load())
        emit(out)
        rows.append(out)
    proc.wait()
    wall = time.perf_counter() - start
    emit({"impl": "mlx-lm-lora", "kind": "process", "rc": proc.returncode,
          "seconds_wall": round(wall, 1), "load": load()})  # fmt: skip
    if proc.returncode != 0 or not rows:
        return rows, "\n".join(tail)
    return rows, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="edgecl steps to time")
    parser.add_argument("--their-iters", type=int, default=2, help="mlx-lm-lora iterations")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--budget", default="0.3", help="tau for the math task")
    parser.add_argument("--their-beta", type=float, default=0.0, help="mlx-lm-lora KL beta")
    parser.add_argument("--lora-python", default="/tmp/lora-venv/bin/python")
    parser.add_argument("--rollouts", default="mlx", help="edgecl's sampler: mlx or llamacpp")
    parser.add_argument("--skip-theirs", action="store_true")
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="echo mlx-lm-lora's output")
    parser.add_argument("--ranks", type=int, default=1, help="edgecl's data-parallel processes")
    parser.add_argument("--ours-out", help=argparse.SUPPRESS)  # a rank's rows, for the launcher
    args = parser.parse_args()

    from edgecl.backends.distributed import launch_local, launched
    from edgecl.models.registry import ensure_gguf, resolve_model

    entry = resolve_model()  # the user's converted model; the run itself uses a temporary home
    if args.ours_out:  # one of --ranks' processes: our half only, then hand the rows back
        ours, items = run_ours(args, entry, Path(args.ours_out).parent / "home")
        if os.environ.get("MLX_RANK") == "0":
            Path(args.ours_out).write_text(json.dumps([ours, [vars(i) for i in items]]))
        return
    with tempfile.TemporaryDirectory(prefix="edgecl-bench-step-") as tmp:
        tmp = Path(tmp)
        ours: list[dict] = []
        if args.ranks > 1 and not args.skip_ours and not launched():
            os.environ["EDGECL_HOME"] = str(tmp / "home")  # the ranks' home: import once
            here = resolve_model()
            if args.rollouts == "llamacpp":
                ensure_gguf(here)
            out = tmp / "ours.json"
            command = [sys.executable, __file__, *sys.argv[1:], "--ours-out", str(out)]
            if launch_local(command, args.ranks) != 0:
                raise SystemExit("a rank failed: see its output above")
            ours, items = json.loads(out.read_text())
            items = [argparse.Namespace(**i) for i in items]
        elif args.skip_ours:
            os.environ["EDGECL_HOME"] = str(tmp / "home")
            from edgecl.config import Phase, TrainConfig
            from edgecl.train import Trainer

            config = TrainConfig(
                "bench-step", [Phase("math", args.budget, 1)], batch_size=args.prompts
            )
            items = Trainer(config, None).batch(0, 0)  # batch() needs no model
        else:
            ours, items = run_ours(args, entry, tmp / "home")
        import gc

        import mlx.core as mx

        gc.collect()  # our model is gone: give its memory back before mlx-lm-lora starts
        mx.clear_cache()
        theirs, error = (
            ([], "skipped")
            if args.skip_theirs
            else run_theirs(args, entry, items, tmp / "mlx-lm-lora")
        )
    summary = {
        "kind": "summary",
        "prompts": args.prompts,
        "group_size": args.group_size,
        "max_tokens": args.max_tokens,
        "their_beta": args.their_beta,
        "edgecl_seconds_per_step": _mean(ours, "seconds_step"),
        "edgecl_seconds_per_step_as_run": _mean(ours, "seconds"),
        "edgecl_steps_grad_forced": sum(r.get("grad_skipped", False) for r in ours),
        "edgecl_tokens_per_step": _mean(ours, "tokens"),
        # The first update also first touches the process's memory (~3 GB): the rest are steady.
        "edgecl_update_fraction_of_gemm_after_step_1": _mean(
            ours[1:], "update_fraction_of_gemm", of=statistics.median
        ),
        "mlx_lm_lora_seconds_per_step": _mean(theirs, "seconds_step"),
        "mlx_lm_lora_tokens_per_step": _mean(theirs, "tokens"),
        "load": load(),
    }
    a, b = summary["edgecl_seconds_per_step"], summary["mlx_lm_lora_seconds_per_step"]
    summary["ratio"] = round(b / a, 3) if a and b else None
    if error:
        summary["mlx_lm_lora_error"] = error[-2000:]
    emit(summary)


def _mean(rows: list[dict], key: str, of=statistics.mean) -> float | None:
    return round(of(r[key] for r in rows), 3) if rows else None


if __name__ == "__main__":
    main()
