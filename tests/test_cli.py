"""`edgecl generate` on the real bundled model, on each backend, as a user runs it."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

COLOURS = {
    "red",
    "blue",
    "green",
    "yellow",
    "orange",
    "purple",
    "pink",
    "black",
    "white",
    "brown",
    "grey",
    "gray",
    "violet",
    "indigo",
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["mlx", "llamacpp"])
def test_generate_names_colours(backend, real_home):
    result = run_cli(
        "generate",
        "--prompt",
        "Name three colours.",
        "--max-tokens",
        "32",
        "--backend",
        backend,
        "--json",
        home=real_home,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    words = {w.strip(".,:;!*-()").lower() for w in out["text"].split()}
    assert words & COLOURS, out["text"]
    assert out["backend"] == backend and 0 < out["tokens"] <= 33


def test_generate_with_missing_adapter_is_one_line(edgecl_home):
    result = run_cli(
        "generate", "--prompt", "hi", "--adapter", "/no/such/adapter", home=edgecl_home
    )
    assert result.returncode == 1 and result.stderr.startswith("error: no such adapter")
    assert result.stderr.count("\n") == 1


def test_generate_with_unknown_model_is_one_line(edgecl_home):
    result = run_cli("generate", "--prompt", "hi", "--model", "nope", home=edgecl_home)
    assert result.returncode == 1 and "unknown model 'nope'" in result.stderr
    assert result.stderr.count("\n") == 1
