"""Does the budget bind on the real model? DA-GRPO runs at tau 0.1 and 0.2, then the evidence.

    python benchmarks/budget.py train              # both runs, resumable (about 2 h each)
    python benchmarks/budget.py train --tau 0.1    # one of them
    python benchmarks/budget.py train --lr 2e-5    # another policy lr (in the run names)
    python benchmarks/budget.py train --tau 0.1 --lr 3e-6 --kl 0.05 --rollouts llamacpp
    python benchmarks/budget.py report             # evals and the results table (markdown)

Each run: `edgecl learn --task math --budget TAU --steps 150 --batch-size 4 --group-size 4
--max-tokens 96 --fresh` on the bundled SmolLM2-135M with the default warm-up (made by the first
run, reused by the second) and the simulated reference cloud. `train` resumes a run that exists.
Set EDGECL_HOME to keep these runs apart from your own.

The report gives, per run: the mean training cloud ratio J_c over the last 30 steps, the lambda
trajectory, the share of mixed groups (some samples ask, some do not), eval per level before
(the warm-up adapter) and after (the run) on the eval split and on the split in unseen
phrasings, the help AUROC against local failure, and retention on the general prompts.
"""

from __future__ import annotations

import argparse
import json

TAUS = (0.1, 0.2)
STEPS = 150
LEARN = "--task math --steps {steps} --batch-size 4 --group-size 4 --max-tokens 96 --fresh"


def run_name(
    tau: float,
    lambda_init: float | None = None,
    lr: float | None = None,
    kl: float | None = None,
    rollouts: str = "mlx",
) -> str:
    parts = [f"budget-tau{tau:g}"]
    for label, value in (("lam", lambda_init), ("lr", lr), ("kl", kl)):
        parts += [f"{label}{value:g}"] if value is not None else []
    return "-".join(parts + ([rollouts] if rollouts != "mlx" else []))


def train(
    tau: float,
    steps: int,
    lambda_init: float | None,
    lr: float | None,
    kl: float | None,
    rollouts: str = "mlx",
) -> None:
    from edgecl.store import Store

    name = run_name(tau, lambda_init, lr, kl, rollouts)
    store = Store()
    row = store.get_run(name)
    store.close()
    if row is not None and row["status"] == "done":
        print(f"{name}: done", flush=True)
        return
    if row is not None:
        args = ["--run-name", name, "--resume"]
    else:
        args = [*LEARN.format(steps=steps).split(), "--budget", str(tau), "--run-name", name]
        if lambda_init is not None:
            args += ["--lambda-init", str(lambda_init)]
        if lr is not None:
            args += ["--lr", str(lr)]
        if kl is not None:
            args += ["--kl", str(kl)]
        args += ["--rollouts", rollouts]
    from edgecl.cli.main import app

    print("edgecl learn " + " ".join(args), flush=True)
    app(["learn", *args], standalone_mode=False)  # in this process: Ctrl-C stops it cleanly


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["train", "report"])
    parser.add_argument("--tau", type=float, action="append", help="default: 0.1 and 0.2")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--lambda-init", type=float, default=None)
    parser.add_argument("--lr", type=float, default=None, help="policy lr (default: learn's)")
    parser.add_argument("--kl", type=float, default=None, help="KL weight (default: learn's)")
    parser.add_argument("--rollouts", choices=["mlx", "llamacpp"], default="mlx")
    args = parser.parse_args()
    taus = args.tau or TAUS
    if args.what == "train":
        for tau in taus:
            train(tau, args.steps, args.lambda_init, args.lr, args.kl, args.rollouts)
    else:
        from budget_report import report

        print(json.dumps(report(taus, args.lambda_init, args.lr, args.kl, args.rollouts), indent=1))


if __name__ == "__main__":
    main()
