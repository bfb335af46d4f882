"""Writes mixed_arithmetic.jsonl: a user's own task of mixed difficulty, with no difficulty field.

    python benchmarks/data/make_mixed_arithmetic.py

160 word-free arithmetic questions in four kinds of 40 (one-digit sums, two-digit sums, sums of
three two-digit numbers, products of two three-digit numbers), shuffled, asked in a few ways.
Nothing in a row says which kind it is; the split is edgecl's default (20% eval by hash).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ASK = ("What is {e}?", "Compute {e}.", "{e} = ?", "Please work out {e}.")


def rows(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    kinds = [
        lambda: [rng.randint(1, 9), rng.randint(1, 9)],
        lambda: [rng.randint(10, 99), rng.randint(10, 99)],
        lambda: [rng.randint(10, 99) for _ in range(3)],
    ]
    out, seen = [], set()
    for kind in range(4):
        while sum(1 for r in out if r["_kind"] == kind) < 40:
            if kind < 3:
                terms = kinds[kind]()
                expression, value = " + ".join(map(str, terms)), sum(terms)
            else:
                a, b = rng.randint(100, 999), rng.randint(100, 999)
                expression, value = f"{a} * {b}", a * b
            if expression in seen:
                continue
            seen.add(expression)
            question = rng.choice(ASK).format(e=expression)
            out.append({"prompt": question, "answer": str(value), "_kind": kind})
    rng.shuffle(out)
    return [{k: v for k, v in r.items() if k != "_kind"} for r in out]


if __name__ == "__main__":
    path = Path(__file__).with_name("mixed_arithmetic.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    print(f"wrote {path}")
