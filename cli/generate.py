"""`edgecl generate`: one-shot generation, like `mlx_lm.generate`.

edgecl generate --prompt "Name three colours." --max-tokens 32
edgecl generate --prompt "2+2?" --backend llamacpp --adapter ~/.local/share/edgecl/adapters/x
"""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path

import typer

from edgecl.errors import EdgeclError


class Backend(str, Enum):
    mlx = "mlx"
    llamacpp = "llamacpp"


def generate(
    prompt: str = typer.Option(..., "--prompt", "-p", help="The user message."),
    backend: Backend = typer.Option(Backend.mlx, help="mlx (training engine) or llamacpp."),
    model: str = typer.Option(None, help="Model name or path (default: the bundled SmolLM2)."),
    adapter: Path = typer.Option(None, help="A LoRA adapter directory written by edgecl."),
    max_tokens: int = typer.Option(128, min=1, help="Largest number of new tokens."),
    temperature: float = typer.Option(0.0, min=0.0, help="0 is greedy."),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0),
    seed: int = typer.Option(0),
    system: str = typer.Option(None, help="Optional system message."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Answer one prompt with the local model."""
    from edgecl.models.registry import resolve_model

    entry = resolve_model(model)
    entry.check_max_tokens(max_tokens)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    if adapter is not None and not adapter.is_dir():
        raise EdgeclError(f"no such adapter directory: {adapter}")
    start = time.perf_counter()
    if backend is Backend.mlx:
        text, n_tokens, finish = _generate_mlx(
            entry, adapter, messages, max_tokens, temperature, top_p, seed
        )
        if not as_json:
            typer.echo(text)
    else:
        text, n_tokens, finish = _generate_llamacpp(
            entry, adapter, messages, max_tokens, temperature, top_p, seed, stream=not as_json
        )
    seconds = time.perf_counter() - start
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "text": text,
                    "backend": backend.value,
                    "model": entry.name,
                    "adapter": str(adapter) if adapter else None,
                    "tokens": n_tokens,
                    "finish_reason": finish,
                    "seconds": round(seconds, 3),
                    "tokens_per_s": round(n_tokens / seconds, 2) if seconds > 0 else None,
                }
            )
        )


def _generate_mlx(entry, adapter, messages, max_tokens, temperature, top_p, seed):
    from edgecl.backends.mlx_backend import MLXModel

    model = MLXModel.load(entry.mlx_dir, entry.name)
    if adapter is not None:
        model.load_adapter(adapter)
    out = model.sample([model.chat_ids(messages)], 1, max_tokens, temperature, top_p, seed=seed)[0]
    return out.text, len(out.token_ids), out.finish_reason


def _generate_llamacpp(entry, adapter, messages, max_tokens, temperature, top_p, seed, stream):
    from edgecl.backends.llamacpp import LlamaCppModel
    from edgecl.models.export import adapter_gguf_for
    from edgecl.models.registry import ensure_gguf

    base = ensure_gguf(entry)
    lora = adapter_gguf_for(adapter, base) if adapter is not None else None
    llm = LlamaCppModel(str(base), adapter_gguf=str(lora) if lora else None, seed=seed)
    if not stream:
        text = llm.chat(messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        return text, len(llm.tokenize(text)), None
    pieces = []
    for piece in llm.chat(
        messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, stream=True
    ):
        pieces.append(piece)
        typer.echo(piece, nl=False)
    typer.echo("")
    text = "".join(pieces)
    return text, len(llm.tokenize(text)), None
