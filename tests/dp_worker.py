"""One DA-GRPO run on the tiny model, as one process or as a rank under `mlx.launch`.

    python tests/dp_worker.py MODEL_DIR TASK_FILE OUT_DIR
    mlx.launch -n 2 --backend ring -- python tests/dp_worker.py MODEL_DIR TASK_FILE OUT_DIR

Rank 0 writes OUT_DIR/result.json (lambda after each step, the step rows' J_c and more) and
the adapter before and after training (initial.safetensors, adapter.safetensors);
tests/test_distributed.py compares the two ways of running it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlx.core as mx

from edgecl.backends.distributed import World
from edgecl.backends.mlx_backend import MLXModel
from edgecl.config import Phase, TrainConfig
from edgecl.train import Trainer


def main(model_dir: str, task_file: str, out_dir: str) -> None:
    config = TrainConfig(
        run_name="dp", phases=[Phase(task_file, "0.2", 3)], batch_size=4, group_size=4,
        max_tokens=40, lr=5e-3, dual_lr=0.5, seed=3, lora_rank=4, lora_alpha=8,
        warmup_steps=0,  # the model already asks on the items labelled hard
        # No KL anchor: at a fresh LoRA (lora_b = 0) the anchor's gradient on lora_a is float
        # noise that depends on how rows are split into micro-batches, and Adam turns noise into
        # full steps of either sign, so 1 and 2 ranks would no longer sample the same tokens.
        kl_coef=0.0,
    )  # fmt: skip
    world = World.init()
    rows = []
    trainer = Trainer(
        config, MLXModel.load(model_dir, "tiny-protocol"), world=world,
        on_event=lambda kind, data: rows.append(data) if kind == "step" else None,
    )  # fmt: skip
    trainer.prepare()
    out = Path(out_dir)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        mx.save_safetensors(str(out / "initial.safetensors"), trainer.model.trainable())
    trainer.run()
    cores = world.cores_per_rank()  # a collective: every rank calls it
    if world.is_main:
        mx.save_safetensors(str(out / "adapter.safetensors"), trainer.model.trainable())
        result = {
            "ranks": world.size,
            "cores_per_rank": cores,
            "lambda": [r["lambda_after"] for r in rows],
            "j_c": [r["j_c"] for r in rows],
            "n_help": [r["n_help"] for r in rows],
            "loss": [r["loss"] for r in rows],
            "responses": [c.text for c in trainer.last_rollout.completions],
        }
        (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
