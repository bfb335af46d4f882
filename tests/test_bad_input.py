"""Bad input: each case is one line on stderr starting with "error: ", exit status 1, no
traceback, and the line names the problem. Run in this process through the console entry
point (`edgecl.cli.main.run`), which is what the `edgecl` command calls.

.venv/bin/python -m pytest tests/test_bad_input.py -q
"""

from __future__ import annotations

import sys

import pytest

from edgecl.cli.main import run
from tiny_model import make_tiny_adapter


@pytest.fixture
def files(tmp_path, tiny_mlx_dir):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)))
    (tmp_path / "corrupt.gguf").write_text("not a model")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    make_tiny_adapter(tmp_path / "other")  # made for another base model
    return {"dir": str(tmp_path), "tiny": str(tiny_mlx_dir)}


CASES = [  # (arguments, words the error must contain)
    ("learn --task math --budget 1.5", "outside [0, 1]"),
    ("learn --task math --budget lots", "bad tau schedule"),
    ("learn --task nope", "unknown task 'nope'"),
    ("learn --task {dir}/bad.jsonl", "line 1: not valid JSON"),
    ("learn --task {dir}/empty.jsonl", "has no rows"),
    ("learn --task {dir}/binary.jsonl", "must be UTF-8 JSONL"),
    ("learn --task math --model {dir}/missing", "no such model path"),
    ("generate --prompt hi --model {dir}/corrupt.gguf", "is not a GGUF file"),
    ("generate --prompt hi --model {tiny} --adapter {dir}/adapter", "is not an edgecl adapter"),
    ("generate --prompt hi --model {tiny} --adapter {dir}/missing", "no such adapter directory"),
    ("generate --prompt hi --model {tiny} --adapter {dir}/other", "was trained for model"),
    ("runs show nope", "no run named 'nope'"),
    ("learn --run-name nope --resume", "no run named 'nope' to resume"),
    ("adapters use 3 --learner nobody", "no learner named 'nobody'"),
    ("learn --task math --fresh --resume --run-name x", "drop --task"),
    ("learn --task math --ranks 0", "--ranks 0: this machine gives"),
    ("learn --task math --ranks 999", "so use 1 to"),
    ("learn --task math --model {tiny} --max-tokens 4096", "beyond the context"),
    ("generate --prompt hi --model {tiny} --max-tokens 2048", "beyond the context"),
    ("chat --once hi --model {tiny} --max-tokens 5000", "beyond the context"),
    ("learn --task math --method ppo", "unknown method 'ppo': use one of da-grpo"),
    ("learn --task math --replay 1.5", "--replay 1.5: give a share of the batch in [0, 1)"),
    ("learn --task math --rollouts vllm", "--rollouts vllm: use mlx or llamacpp"),
    ("eval --task math --model {tiny} --router psychic --budget 0.3", "unknown router 'psychic'"),
    ("bench continual --sequence math", "two tasks or more"),
    ("bench continual --methods da-grpo,ppo", "unknown method 'ppo'"),
    ("bench continual --budget math=0.3", "--budget is task:value"),
    ("bench continual --executor slurm", "unknown --executor 'slurm'"),
    ("bench continual --parallel 0", "--parallel 0: this machine gives"),
    ("bench assist-grid --task math --budget 0.3 --method edge-only", "has no assistance reward"),
    ("bench show nope", "no benchmark 'nope'"),
    ("report --run a --bench b", "give one of --run NAME and --bench ID"),
    ("report --bench nope", "no benchmark 'nope'"),
]


@pytest.mark.parametrize("args,words", CASES, ids=[c[0].split(" {")[0] for c in CASES])
def test_bad_input_is_one_line(args, words, files, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["edgecl", *args.format(**files).split()])
    with pytest.raises(SystemExit) as stopped:
        run()
    err = capsys.readouterr().err
    assert stopped.value.code == 1, err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
