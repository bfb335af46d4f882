"""`edgecl learn`: DA-GRPO post-training with a cloud budget, live progress, resumable.

    edgecl learn --task math --budget 0.3
    edgecl learn --curriculum math:0.3,code:0.5 --steps 100
    edgecl learn --task math --budget 0.3 --steps 3 --batch-size 2 --group-size 4 \\
        --max-tokens 64 --cloud reference --run-name smoke
    edgecl learn --run-name smoke --resume
    edgecl learn --task qa --budget 0.3      # the next task: from the learner's adapter and lambda
    edgecl learn --task math --method gapg   # a baseline of the paper (edgecl.core.methods)
    edgecl learn --task math --ranks 2       # data parallel over this machine's cores
"""

from __future__ import annotations

import statistics
import sys
import time

import typer
from rich.console import Console

from edgecl.core.dual import RATIO_WINDOW
from edgecl.errors import EdgeclError

console = Console(highlight=False, soft_wrap=True)


def learn(
    task: str = typer.Option(None, help="math, code, qa, math-easy, ... or a .jsonl file."),
    budget: str = typer.Option("0.3", help="Cloud budget tau in [0, 1], or 'tau@step,...'."),
    curriculum: str = typer.Option(None, help="Tasks in sequence: math:0.3,code:0.5[:steps]."),
    steps: int = typer.Option(None, help="DA-GRPO steps per task (preset default)."),
    batch_size: int = typer.Option(None, help="Prompts per step (preset default)."),
    group_size: int = typer.Option(None, help="Samples per prompt G (preset default)."),
    max_tokens: int = typer.Option(None, help="Longest response (preset default)."),
    lr: float = typer.Option(None, help="Policy (LoRA) learning rate [3e-6]."),
    dual_lr: float = typer.Option(None, help="Dual step size eta_lambda [0.5] (see README)."),
    lambda_init: float = typer.Option(None, help="Initial dual variable [auto: see README]."),
    kl: float = typer.Option(None, help="Weight of the KL to the starting adapter [0.05]."),
    cloud: str = typer.Option(None, help="reference[:accuracy] (simulated) or openai."),
    cloud_url: str = typer.Option(None, help="OpenAI-compatible base URL, e.g. .../v1."),
    cloud_model: str = typer.Option(None, help="Model name at the cloud endpoint."),
    cloud_key_env: str = typer.Option(None, help="Env var holding the API key (never stored)."),
    run_name: str = typer.Option(None, help="Name of the run (default: task and time)."),
    resume: bool = typer.Option(False, help="Continue the run --run-name exactly."),
    model: str = typer.Option(None, help="Model name or path (default: bundled SmolLM2)."),
    preset: str = typer.Option(None, help="small (CPU default) or paper."),
    seed: int = typer.Option(None, help="Seed of data order and sampling [0]."),
    scale_rewards: str = typer.Option(None, help="none (eq. 8) or group (std-normalised)."),
    verifier: str = typer.Option(None, help="math-verify (default) or exact (the paper's)."),
    warmup_steps: int = typer.Option(None, help="Warm-up format steps [40]; 0: no warm-up."),
    help_steps: int = typer.Option(None, help="Warm-up steps teaching where to ask [30]."),
    rewarm: bool = typer.Option(False, help="Warm up again instead of reusing a stored warm-up."),
    learner: str = typer.Option(None, help="The learner whose adapter this run continues."),
    fresh: bool = typer.Option(False, help="Start from the base model, not the learner's adapter."),
    method: str = typer.Option(None, help="da-grpo; baselines: grpo-hier gapg gvpo edge-only."),
    assist_reward: float = typer.Option(None, help="Baselines: reward of a right cloud answer."),
    replay: float = typer.Option(None, help="Share of a batch from earlier tasks (0.25)."),
    rollouts: str = typer.Option(None, help="mlx, or llamacpp: faster sampling on x86 CPUs."),
    ranks: int = typer.Option(None, help="Data-parallel processes here, one per core share [1]."),
) -> None:
    """Train the local model on a task with a cloud budget (DA-GRPO)."""
    from edgecl.config import (
        PRESETS,
        Phase,
        TrainConfig,
        default_preset,
        parse_budget,
        parse_curriculum,
    )
    from edgecl.store import Store

    store = Store()
    if resume:
        fixed = {"--task": task, "--curriculum": curriculum, "--fresh": fresh,
                 "--rollouts": rollouts}  # fmt: skip
        clash = [flag for flag, value in fixed.items() if value]
        if clash:
            raise EdgeclError(f"--resume continues a run with its own settings: drop {clash[0]}")
        if not run_name:
            raise EdgeclError("--resume needs --run-name NAME (see edgecl runs list)")
        run = store.get_run(run_name)
        if run is None:
            raise EdgeclError(f"no run named {run_name!r} to resume (see edgecl runs list)")
        config = TrainConfig.from_dict(run["config"])
    else:
        if (task is None) == (curriculum is None):
            raise EdgeclError("give either --task T (with --budget) or --curriculum T:tau,...")
        defaults = PRESETS[preset or default_preset()] if preset in (None, *PRESETS) else None
        if defaults is None:
            raise EdgeclError(f"unknown --preset {preset!r}: use small or paper")
        n_steps = steps or defaults["steps"]
        phases = (
            parse_curriculum(curriculum, n_steps)
            if curriculum
            else [Phase(task, parse_budget(budget), n_steps)]
        )
        cloud_options = {"base_url": cloud_url, "model": cloud_model, "api_key_env": cloud_key_env}
        given = {"lr": lr, "dual_lr": dual_lr, "lambda_init": lambda_init, "cloud": cloud,
                 "seed": seed, "scale_rewards": scale_rewards, "warmup_steps": warmup_steps,
                 "help_steps": help_steps, "learner": learner, "kl_coef": kl,
                 "method": method, "assist_reward": assist_reward, "replay": replay,
                 "rollouts": rollouts}  # fmt: skip
        config = TrainConfig(
            run_name=run_name
            or f"{phases[0].task.split('/')[-1]}-{time.strftime('%Y%m%d-%H%M%S')}",
            phases=phases,
            model=model,
            batch_size=batch_size or defaults["batch_size"],
            group_size=group_size or defaults["group_size"],
            max_tokens=max_tokens or defaults["max_tokens"],
            cloud_options={k: v for k, v in cloud_options.items() if v is not None},
            verifier=verifier,
            fresh=fresh,
            # TrainConfig holds the defaults: only what the user gave goes in
            **{k: v for k, v in given.items() if v is not None},
        )
    if ranks is not None and ranks != 1:
        _launch_ranks(config, store, ranks, name_given=bool(resume or run_name))
    trainer = _build_trainer(config, store)
    try:
        trainer.prepare(resume=resume, rewarm=rewarm)
        _print_eta(trainer)
        trainer.run()
    except KeyboardInterrupt:
        console.print(
            f"\nstopped at step {trainer.state.step}; the checkpoint is saved. "
            f"Continue with: edgecl learn --run-name {config.run_name} --resume"
        )
        raise typer.Exit(130) from None
    console.print(
        f"done: run {config.run_name}, {trainer.state.step} steps, "
        f"lambda {trainer.state.lam:.4f}. See: edgecl runs show {config.run_name}"
    )


def _launch_ranks(config, store, ranks: int, name_given: bool) -> None:
    """Run this same command as `ranks` processes of one data-parallel world on this machine
    (edgecl.backends.distributed.launch_local) and exit with their status. Each rank trains as
    one process would (tests/test_distributed.py); the ranks agree on the run's name."""
    from edgecl.backends.distributed import check_ranks, launch_local, launched
    from edgecl.models.registry import ensure_gguf, resolve_model

    if launched():  # this process is one of the ranks (or runs under mlx.launch)
        return
    check_ranks(ranks)
    _check_tasks(config)
    entry = resolve_model(config.model)  # a first-time import or GGUF conversion happens once
    if config.rollouts == "llamacpp":
        ensure_gguf(entry)
    store.close()
    argv = sys.argv[1:] + ([] if name_given else ["--run-name", config.run_name])
    command = [sys.executable, "-c", "from edgecl.cli.main import run; run()", *argv]
    raise typer.Exit(launch_local(command, ranks))


def _check_tasks(config) -> None:
    """Bad task names and files fail before anything loads."""
    from edgecl.tasks.registry import get_task

    for phase in config.phases:
        get_task(phase.task, config.verifier, config.seed)


def _build_trainer(config, store):
    from edgecl.backends.distributed import World
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.models.registry import resolve_model
    from edgecl.train import Trainer

    _check_tasks(config)
    world = World.init()  # more than one rank under `mlx.launch`: data parallel
    console.quiet = not world.is_main  # rank 0 speaks for all
    entry = resolve_model(config.model)
    entry.check_max_tokens(config.max_tokens)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    ranks = f", {world.size} data-parallel ranks" if world.size > 1 else ""
    console.print(
        f"run {config.run_name}: model {entry.name}, "
        f"{' -> '.join(f'{p.task} (tau {p.budget}, {p.steps} steps)' for p in config.phases)}, "
        f"batch {config.batch_size} x G {config.group_size}, {config.max_tokens} tokens, "
        f"cloud {config.cloud}{ranks}, rollouts on {config.rollouts}"
    )
    display = _Display()
    trainer = Trainer(config, model, store, on_event=display, world=world)
    display.total = trainer.total_steps
    return trainer


def _print_eta(trainer) -> None:
    """From steps measured on this machine with the same settings; else after the first step."""
    remaining = trainer.total_steps - trainer.state.step
    measured = trainer.store.step_seconds(trainer.config.to_dict())
    if measured:
        per_step = statistics.median(measured)
        console.print(
            f"ETA: about {_duration(per_step * remaining)} for {remaining} steps "
            f"(~{per_step:.0f} s/step, the median of {len(measured)} steps measured here with "
            "these settings)"
        )
    else:
        console.print(f"{remaining} steps to go; ETA after the first step")


class _Display:
    """Prints one line per step: lambda, cloud ratio vs tau, reward, accuracy, tok/s, ETA."""

    def __init__(self):
        self.started = time.perf_counter()
        self.first_step = None
        self.total = 0
        self.warmup_started = 0.0

    def __call__(self, kind: str, data: dict) -> None:
        if kind == "probe":
            levels = ", ".join(
                f"{name} {r['correct']}/{r['n']} right {r['help']}/{r['n']} help"
                for name, r in data["levels"].items()
            )
            mixed = sum(r["mixed"] for r in data["levels"].values())
            groups = (
                f"; mixed groups {mixed}/{data['n'] // data['group']}" if data["group"] > 1 else ""
            )
            console.print(f"probe: format {data['format']:.0%} of {data['n']}{groups}; {levels}")
        elif kind == "ability":
            console.print(
                "ability (local success, items with mixed outcomes): "
                + ", ".join(
                    f"{k} {v['success']:.0%} ({v['mixed']}/{v['n']})" for k, v in data.items()
                )
            )
        elif kind == "learner":
            console.print(
                f"learner {data['name']}: continuing from its adapter version {data['version']}, "
                f"lambda {data['lambda']:.3f} (--fresh starts from the base model)"
            )
        elif kind == "published":
            console.print(
                f"learner {data['learner']}: published adapter version {data['version']} "
                "(edgecl adapters list)"
            )
        elif kind == "warmup_reused":
            after = data.get("probe_after") or {}
            console.print(
                f"warm-up: reusing the one made {data.get('made', '?')[:16].replace('T', ' ')} UTC "
                "for this model, tasks "
                f"and settings (format {after.get('format', 0):.0%} after it; "
                f"{data['reused']}); --rewarm redoes it"
            )
        elif kind == "warmup":
            step, total = data["step"], data["of"]
            if step == 1:
                self.warmup_started = time.perf_counter()
            if step == 1 or step % 5 == 0 or step == total:
                line = f"warm-up {data['phase']} {step}/{total}: loss {data['loss']:.3f}"
                if step > 1:  # the first step pays one-off set-up costs; time the ones after it
                    rate = (time.perf_counter() - self.warmup_started) / (step - 1)
                    line += f", {rate:.0f} s/step, ETA {_duration(rate * (total - step))}"
                console.print(line)
        elif kind == "step":
            self._step(data)

    def _step(self, row: dict) -> None:
        trainer_total = self.total
        now = time.perf_counter()
        if self.first_step is None:
            self.first_step, self.started = row["step"], now
            rate = row["seconds"]
        else:  # the first step of a process pays for compiling and loading: time the ones after
            rate = (now - self.started) / (row["step"] - self.first_step)
        eta = _duration(rate * (trainer_total - row["step"]))
        r = row
        console.print(
            f"step {r['step']:>4}/{trainer_total} {r['task']:<10} "
            f"lambda {r['lambda_after']:.3f} cloud {r['cloud_ratio']:.2f} "
            f"(mean{RATIO_WINDOW} {r['j_c_mean']:.2f})/tau {r['tau']:.2f} "
            f"calls {r['n_cloud_calls']} "
            f"reward {r['mean_reward']:+.3f} acc {r['accuracy']:.2f} "
            + (f"KL {r['kl']:.3f} " if r.get("kl") is not None else "")
            + f"{r['tokens_per_s']:.0f} tok/s {r['seconds']:.1f}s ETA {eta}"
        )
        if row["collapsed"]:
            console.print(
                "[bold red]help policy collapsed[/]: no sample has asked for help for "
                "many steps while tau > 0 and lambda = 0 (paper C.1); lower --lr and "
                "restart, or warm up again"
            )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
