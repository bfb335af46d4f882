"""Writes the mixed-arithmetic JSONL tasks: a user's own task of mixed difficulty.

    python benchmarks/data/make_mixed_arithmetic.py

- mixed_arithmetic.jsonl: 160 word-free arithmetic questions in four kinds of 40 (one-digit
  sums, two-digit sums, sums of three two-digit numbers, products of two three-digit numbers),
  shuffled, asked in a few ways. Nothing in a row says which kind it is (the warm-up must find
  where the model fails by itself); the split is edgecl's default (20% eval by hash).
- mixed_arithmetic_calibration.jsonl: 800 questions, 200 of each kind (the first kind is a
  one-digit plus a two-digit number, since one-digit sums have only 81), each row labelled with
  its kind as "difficulty" so eval reports per kind: benchmarks/calibration.py's second task.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ASK = ("What is {e}?", "Compute {e}.", "{e} = ?", "Please work out {e}.")
LABELS = ("1+2-digit sum", "2-digit sum", "3-term sum", "3-digit product")  # labelled file


def rows(seed: int = 7, per_kind: int = 40, wide_first_kind: bool = False) -> list[dict]:
    rng = random.Random(seed)
    first = (
        (lambda: [rng.randint(1, 9), rng.randint(10, 99)][:: rng.choice((1, -1))])
        if (wide_first_kind)
        else (lambda: [rng.randint(1, 9), rng.randint(1, 9)])
    )
    kinds = [
        first,
        lambda: [rng.randint(10, 99), rng.randint(10, 99)],
        lambda: [rng.randint(10, 99) for _ in range(3)],
    ]
    out, seen = [], set()
    for kind in range(4):
        while sum(1 for r in out if r["_kind"] == kind) < per_kind:
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
    return out


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    here = Path(__file__).parent
    write(
        here / "mixed_arithmetic.jsonl",
        [{k: v for k, v in r.items() if k != "_kind"} for r in rows()],
    )
    labelled = rows(seed=11, per_kind=200, wide_first_kind=True)
    for r in labelled:
        r["difficulty"] = LABELS[r.pop("_kind")]
    write(here / "mixed_arithmetic_calibration.jsonl", labelled)
