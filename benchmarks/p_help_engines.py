"""P(help) on the two chat backends: llama.cpp (the quantized GGUF plus the GGUF LoRA) against
MLX (float32), on the same responses. The calibrated threshold is measured on MLX and applied on
either.

    python benchmarks/p_help_engines.py --adapter DIR [--items 8]

The first `--items` math eval questions; each response is MLX's greedy chat answer (96 tokens).
One JSON line per item, then the largest and the mean absolute difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecl.core.protocol import build_messages
from edgecl.generation import load_engine
from edgecl.tasks.registry import get_task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--items", type=int, default=8)
    args = parser.parse_args()
    mlx, llama = load_engine("mlx", None, args.adapter), load_engine("llamacpp", None, args.adapter)
    gaps = []
    for item in get_task("math").items("eval")[: args.items]:
        messages = build_messages("math", item.question)
        response = "".join(mlx.stream(messages, 96, 0.0, False))
        a, b = mlx.help_probability(messages, response), llama.help_probability(messages, response)
        gaps.append(abs(a - b))
        print(json.dumps({"level": item.difficulty, "mlx": round(a, 3), "llamacpp": round(b, 3)}))
    print(
        json.dumps(
            {"max_abs_diff": round(max(gaps), 3), "mean_abs_diff": round(sum(gaps) / len(gaps), 3)}
        )
    )


if __name__ == "__main__":
    main()
