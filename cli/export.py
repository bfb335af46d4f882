"""`edgecl export`: write an adapter in another format.

edgecl export --adapter ~/.local/share/edgecl/adapters/math --format gguf
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class Format(str, Enum):
    gguf = "gguf"


def export(
    adapter: Path = typer.Option(..., help="Adapter directory written by edgecl."),
    format: Format = typer.Option(Format.gguf, "--format", help="gguf: a llama.cpp LoRA."),
    out: Path = typer.Option(None, help="Output file (default: ADAPTER/adapter.gguf)."),
    model: str = typer.Option(None, help="Base model the adapter must fit (default: bundled)."),
) -> None:
    """Export a LoRA adapter for llama.cpp."""
    from edgecl.models.export import export_gguf_lora
    from edgecl.models.registry import ensure_gguf, resolve_model

    base = ensure_gguf(resolve_model(model))
    path = export_gguf_lora(adapter, out, base_gguf=base)
    typer.echo(str(path))
