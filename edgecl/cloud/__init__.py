"""The helper models a local model may ask: a real OpenAI-compatible endpoint or the reference.

`make_cloud("reference", task=task)` answers from gold data (simulated), `"reference:0.8"` is
right 80% of the time, and `make_cloud("openai", base_url="http://127.0.0.1:8080/v1",
model="smollm2")` talks to any OpenAI-compatible chat endpoint.
"""

from __future__ import annotations

from typing import Any

from edgecl.cloud.base import Cloud, CloudReply
from edgecl.cloud.openai import OpenAICloud
from edgecl.cloud.reference import ReferenceCloud
from edgecl.errors import EdgeclError

__all__ = ["Cloud", "CloudReply", "OpenAICloud", "ReferenceCloud", "make_cloud"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def make_cloud(spec: str, task: Any = None, seed: int = 0, **options: Any) -> Cloud:
    """Build a cloud from a CLI spec: "reference", "reference:ACC", "openai" or "openai:MODEL".

    For "openai", `options` are OpenAICloud's keyword arguments (base_url defaults to
    OpenAI's; model is required); options that are None are dropped so CLI defaults apply.
    """
    kind, _, arg = spec.strip().partition(":")
    options = {k: v for k, v in options.items() if v is not None}
    if kind == "reference":
        if task is None:
            raise EdgeclError("the reference cloud answers from a task's gold data: pass --task")
        try:
            accuracy = float(arg) if arg else 1.0
        except ValueError:
            raise EdgeclError(f"bad cloud spec {spec!r}: use reference:0.8") from None
        return ReferenceCloud(task, accuracy=accuracy, seed=seed)
    if kind == "openai":
        if arg:
            options["model"] = arg
        if "model" not in options:
            raise EdgeclError("the openai cloud needs a model name: pass --cloud-model NAME")
        options.setdefault("base_url", DEFAULT_BASE_URL)
        return OpenAICloud(**options)
    raise EdgeclError(f"unknown cloud {spec!r}: use reference, reference:ACCURACY or openai")
