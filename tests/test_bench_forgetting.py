"""The forgetting benchmark still runs: --smoke prints its table with a row per way of fine-tuning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_forgetting_benchmark_smoke_prints_full_and_lora_rows(tmp_path):
    pytest.importorskip("peft", reason="the LoRA row needs peft")
    out = subprocess.run([sys.executable, str(ROOT / "benches" / "forgetting.py"), "--smoke", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| fine-tuning | steps |")
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["full", "LoRA r=8"]
    assert all(float(r.split("|")[4]) > 0 for r in rows[1:])       # a perplexity at step 0
