"""A full disk and a read-only data dir, for real: a small tmpfs and a read-only bind mount,
each in a mount namespace of its own (`unshare -m`; root ignores file modes, so not chmod).
Each gives a one-line error, no traceback, and leaves the database and the runs intact.

.venv/bin/python -m pytest tests/test_storage.py -q
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from test_learn_cli import sums_task

from edgecl.store import Store

LEARN = "learn --budget 0.3 --batch-size 2 --group-size 2 --max-tokens 8 --warmup-steps 0"


def in_namespace(script: str, **values: str) -> subprocess.CompletedProcess:
    """Run a shell script in a new mount namespace, with `edgecl` defined as a function."""
    edgecl = f'edgecl() {{ "{sys.executable}" -c "from edgecl.cli.main import run; run()" "$@"; }}'
    full = edgecl + "\n" + script.format(**values)
    return subprocess.run(["unshare", "-m", "sh", "-c", full], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def one_line_error(text: str, words: str) -> bool:
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    return "Traceback" not in text and len(errors) == 1 and words in errors[0]


def test_a_full_disk_is_one_line_and_the_run_resumes(tmp_path, tiny_mlx_dir):
    home, task = tmp_path / "home", sums_task(tmp_path, 20)
    home.mkdir()
    script = """
    mount -t tmpfs -o size=8m tmpfs {home}
    export EDGECL_HOME={home}
    edgecl {learn} --task {task} --model {model} --steps 2 --run-name before > /dev/null
    dd if=/dev/zero of={home}/filler bs=64k 2> /dev/null || true   # the disk is now full
    echo "== full"
    edgecl {learn} --task {task} --model {model} --steps 3 --run-name during 2>&1 || echo "exit $?"
    edgecl runs show before > /dev/null 2>&1 || echo "reading: exit $?"  # a clear error too
    rm {home}/filler
    echo "== freed"
    if edgecl runs show during > /dev/null 2>&1; then
        edgecl learn --run-name during --resume > /dev/null
    else
        edgecl {learn} --task {task} --model {model} --steps 3 --run-name during > /dev/null
    fi
    echo "resumed $?"
    edgecl runs show before > /dev/null && echo "before readable"
    "{python}" -c "import sqlite3; print(sqlite3.connect('{home}/edgecl.db').execute('PRAGMA integrity_check').fetchone()[0])"
    "{python}" -c "import sqlite3; print(sqlite3.connect('{home}/edgecl.db').execute('SELECT COUNT(*) FROM steps WHERE run = \\"during\\"').fetchone()[0])"
    """  # noqa: E501
    out = in_namespace(script, home=str(home), task=str(task), model=str(tiny_mlx_dir),
                       learn=LEARN, python=sys.executable)  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    full = text.split("== full")[1].split("== freed")[0]
    assert one_line_error(full, "no space left"), full
    assert "exit 1" in full and "Traceback" not in full
    lines = text.split("== freed")[1].split()
    # every step there once, the database intact
    assert lines[:6] == ["resumed", "0", "before", "readable", "ok", "3"], text


def test_a_read_only_data_dir_is_one_line_and_nothing_changes(tmp_path, tiny_mlx_dir):
    home, task = tmp_path / "home", sums_task(tmp_path, 20)
    from conftest import run_cli

    first = run_cli(*LEARN.split(), "--task", str(task), "--model", str(tiny_mlx_dir),
                    "--steps", "2", "--run-name", "mine", home=home)  # fmt: skip
    assert first.returncode == 0, first.stderr
    before = sorted(p.relative_to(home) for p in home.rglob("*") if p.is_file())
    script = """
    export EDGECL_HOME={home}
    mount --bind -o ro {home} {home}
    touch {home}/probe 2> /dev/null && echo "still writable"
    edgecl {learn} --task {task} --model {model} --steps 2 --run-name other 2>&1 || echo "exit $?"
    """
    out = in_namespace(script, home=str(home), task=str(task), model=str(tiny_mlx_dir),
                       learn=LEARN)  # fmt: skip
    text = out.stdout + out.stderr
    assert "still writable" not in text
    assert one_line_error(text, "is read-only") and "exit 1" in text, text
    after = sorted(p.relative_to(home) for p in home.rglob("*") if p.is_file())
    assert after == before
    conn = sqlite3.connect(home / "edgecl.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [r["name"] for r in Store(home / "edgecl.db").list_runs()] == ["mine"]
