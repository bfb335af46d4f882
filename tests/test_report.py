"""`edgecl report`: the PNGs are valid images, and the CSV beside each holds exactly the step
values stored in SQLite.

.venv/bin/python -m pytest tests/test_report.py -q
"""

from __future__ import annotations

import csv

from test_learn_cli import sums_task

from conftest import run_cli
from edgecl.store import Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_writes_pngs_csvs_and_a_page(tmp_path, edgecl_home, tiny_mlx_dir):
    task = sums_task(tmp_path, 20)
    learn = run_cli("learn", "--task", str(task), "--model", str(tiny_mlx_dir), "--budget",
                    "0.3@0,0.1@2", "--steps", "4", "--batch-size", "2", "--group-size", "2",
                    "--max-tokens", "8", "--warmup-steps", "0", "--run-name", "r",
                    home=edgecl_home)  # fmt: skip
    assert learn.returncode == 0, learn.stderr
    out = tmp_path / "plots"
    result = run_cli("report", "--run", "r", "--out", str(out), home=edgecl_home)
    assert result.returncode == 0, result.stderr
    names = ["lambda", "cloud_ratio", "reward_accuracy", "task_accuracy"]
    page = (out / "index.html").read_text()
    steps = Store().steps("r")
    for name in names:
        import matplotlib.image

        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and f'src="{name}.png"' in page
        assert matplotlib.image.imread(png).shape[:2] == (450, 800)
        rows = list(csv.DictReader((out / f"{name}.csv").open()))
        assert [int(r["step"]) for r in rows] == [s["step"] for s in steps]
    ratio = list(csv.DictReader((out / "cloud_ratio.csv").open()))
    assert [float(r["j_c"]) for r in ratio] == [s["j_c"] for s in steps]
    assert [float(r["tau"]) for r in ratio] == [0.3, 0.3, 0.1, 0.1]
    lam = list(csv.DictReader((out / "lambda.csv").open()))
    assert [float(r["lambda"]) for r in lam] == [s["lambda_after"] for s in steps]

    missing = run_cli("report", "--run", "nope", home=edgecl_home)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no run named 'nope'")
