"""A training run's settings: what the CLI fills in and the SQLite `runs` row keeps.

Defaults come from a preset: `small` on CPU (a laptop-sized step: 4 prompts x 8 samples x 128
tokens), `paper` elsewhere (scaled-down Table 3: 16 prompts, G=8, 256 tokens).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgecl.core.dual import DUAL_LR, TauSchedule
from edgecl.core.methods import REPLAY_DEFAULT, get_method
from edgecl.errors import EdgeclError

PRESETS = {
    "small": {"batch_size": 4, "group_size": 8, "max_tokens": 128, "steps": 50},
    "paper": {"batch_size": 16, "group_size": 8, "max_tokens": 256, "steps": 200},
}


@dataclass
class Phase:
    """One task of a curriculum, with its budget tau (a number or a schedule) and step count."""

    task: str
    budget: str
    steps: int


@dataclass
class TrainConfig:
    run_name: str
    phases: list[Phase]
    model: str | None = None
    learner: str = "default"  # edgecl.learner: whose current adapter and lambda the run continues
    fresh: bool = False  # start from the base model, whatever the learner has
    method: str = "da-grpo"  # or a baseline of the paper: edgecl.core.methods
    assist_reward: float | dict | None = None  # hierarchical methods: one value, or per task;
    # None: the paper's for the task's kind (edgecl.core.methods.ASSIST_REWARD)
    replay: float = 0.0  # share of each batch from earlier tasks (edgecl.replay)
    batch_size: int = 4
    group_size: int = 8
    max_tokens: int = 128
    lr: float = 3e-6  # larger steps flip the help decision faster than lambda can follow
    # (1e-4 and 2e-5 cycle or collapse; 3e-6 holds tau 0.1 and 0.2: benchmarks/README.md)
    dual_lr: float = DUAL_LR  # eta_lambda: edgecl.core.dual explains the value
    lambda_init: float | None = None  # None: edgecl.core.dual.initial_lambda after the warm-up
    cloud: str = "reference"
    cloud_options: dict = field(default_factory=dict)
    seed: int = 0
    scale_rewards: str = "none"
    reward_variant: str = "literal"
    verifier: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_layers: int = -1
    micro_batch: int = 8
    rollouts: str = "mlx"  # or "llamacpp": sampled there, importance-weighted (llamacpp_batch)
    collapse_window: int = 20
    warmup_steps: int = 40  # format phase; 0 skips the whole warm-up
    help_steps: int = 30  # help phase (edgecl.warmup)
    warmup_batch_size: int = 8
    warmup_lr: float = 2e-4
    general_rows: int = 2  # base-model answers to general prompts in every supervised batch
    ability_items: int = 64  # train items per task whose local success rate is measured
    ability_k: int = 4  # samples per item for that rate
    distill_weight: float = 0.1  # DA-GRPO: weight of the general rows' mean token NLL
    kl_coef: float = 0.05  # DA-GRPO: KL to the adapter the run started from (edgecl.regularize)
    warmup_tasks: list[str] | None = None  # what the warm-up covers (default: the phases' tasks);
    # bench assist-grid gives the benchmark's sequence, so its runs start where the bench's do
    probe_size: int = 16
    format_threshold: float = 0.5
    promote: bool = True  # False: the finished adapter is a candidate, not current (edgecl.adapt)

    def __post_init__(self) -> None:
        if not self.phases:
            raise EdgeclError("nothing to learn: give --task or --curriculum")
        get_method(self.method)  # a bad name fails before anything runs
        if self.method == "edge-only":
            self.help_steps = 0  # its warm-up teaches the format only, never the help request
        if self.method == "da-grpo+replay" and not self.replay:
            self.replay = REPLAY_DEFAULT
        if not 0 <= self.replay < 1:
            raise EdgeclError(f"--replay {self.replay}: give a share of the batch in [0, 1)")
        for phase in self.phases:
            TauSchedule.parse(phase.budget)  # a bad budget fails before anything runs
            if phase.steps < 1:
                raise EdgeclError(f"--steps {phase.steps}: give at least 1 step")
        if self.rollouts not in ("mlx", "llamacpp"):
            raise EdgeclError(f"--rollouts {self.rollouts}: use mlx or llamacpp")
        if self.group_size < 2:
            raise EdgeclError(f"--group-size {self.group_size}: GRPO needs G >= 2")
        if self.batch_size < 1 or self.max_tokens < 8:
            raise EdgeclError("--batch-size must be >= 1 and --max-tokens >= 8")
        if (self.lambda_init or 0) < 0 or self.dual_lr < 0 or self.lr <= 0 or self.kl_coef < 0:
            raise EdgeclError("--lambda-init, --dual-lr and --kl must be >= 0 and --lr > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        # Runs stored before --mode was removed (its grpo/gapg only swapped the advantages).
        if data.pop("mode", "da-grpo") != "da-grpo":
            raise EdgeclError(
                f"run {data.get('run_name')!r} used an advantage mode edgecl no longer offers: "
                "start a new run"
            )
        data["phases"] = [Phase(**p) for p in data["phases"]]
        return cls(**data)


def parse_budget(text: str) -> str:
    """Check a --budget value (a tau in [0, 1] or a schedule); returns it normalised."""
    try:
        return str(TauSchedule.parse(text))
    except EdgeclError as e:
        raise EdgeclError(f"--budget {text}: {e}") from None


def parse_curriculum(text: str, steps: int) -> list[Phase]:
    """'math:0.3,code:0.5' (or 'math:0.3:100,...' with per-task steps) -> phases in order."""
    phases = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        fields = part.split(":")
        if len(fields) not in (2, 3):
            raise EdgeclError(
                f"bad curriculum entry {part!r}: write task:budget[:steps], e.g. math:0.3,code:0.5"
            )
        try:
            n = int(fields[2]) if len(fields) == 3 else steps
        except ValueError:
            raise EdgeclError(f"bad step count in {part!r}: e.g. math:0.3:100") from None
        phases.append(Phase(fields[0], parse_budget(fields[1]), n))
    if not phases:
        raise EdgeclError("empty --curriculum: e.g. math:0.3,code:0.5")
    return phases


def default_preset() -> str:
    """`small` when MLX computes on the CPU, else `paper`."""
    from edgecl.backends.blas import preload_openblas

    preload_openblas()
    import mlx.core as mx

    return "small" if mx.default_device() == mx.cpu else "paper"
