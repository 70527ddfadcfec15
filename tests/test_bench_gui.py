"""The window's benchmarks still run: each one's --smoke prints its table with every row and finite figures."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from tests.test_benches import ROOT, positive, table_rows


def run_smoke(script: str) -> list[dict[str, str]]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, str(ROOT / "benches" / script), "--smoke"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return table_rows(out.stdout)


def figure(cell: str) -> float:
    """The number of a value cell such as "12.5 ms" or "0.62 %"."""
    value = float(cell.split()[0])
    assert math.isfinite(value), cell
    return value


def check_target(row: dict[str, str]) -> None:
    if row["target"] == "—":
        assert row["met?"] == "—", row
    else:
        assert row["met?"] in ("met", "missed"), row


@pytest.mark.slow
def test_gui_responsiveness_smoke_prints_every_measure_with_finite_figures():
    rows = run_smoke("gui_responsiveness.py")
    measures = [r["measure"] for r in rows]
    expected = ["window start (median of 1)"]
    for phase in ("demo loading and checks", "demo training", "flood"):
        expected += [f"{phase}: timer lateness {q}" for q in ("p50", "p95", "p99", "max")]
        if phase == "demo training":
            expected.append("flood of 500 events (4 tasks): time to absorb")
    expected.append("a followed log of 500 steps (4 tasks): time to show")
    expected += [f"followed log: timer lateness {q}" for q in ("p50", "p95", "p99", "max")]
    expected += ["loss chart, 4 tasks x 20,000 points: live frame (median)",
                 "loss chart, 4 tasks x 20,000 points: repaint (median)"]
    assert measures == expected
    for row in rows:
        check_target(row)
        if "lateness" in row["measure"]:
            assert figure(row["value"]) >= 0, row       # a timer that is never late is 0 ms late
        else:
            positive(row["value"].split()[0])
    targeted = {r["measure"]: r["target"] for r in rows if r["target"] != "—"}
    assert targeted == {"window start (median of 1)": "<= 1.5 s",
                        "demo training: timer lateness p99": "<= 20 ms",
                        "demo training: timer lateness max": "<= 100 ms",
                        "flood: timer lateness p99": "<= 20 ms", "flood: timer lateness max": "<= 100 ms",
                        "followed log: timer lateness p99": "<= 20 ms",
                        "followed log: timer lateness max": "<= 100 ms",
                        "loss chart, 4 tasks x 20,000 points: live frame (median)": "<= 10 ms",
                        "loss chart, 4 tasks x 20,000 points: repaint (median)": "<= 10 ms"}


@pytest.mark.slow
def test_memory_smoke_prints_rss_and_growth_with_finite_figures():
    rows = run_smoke("memory.py")
    # the steps in the measures' names depend on when samples fell: "RSS at the end (step 300)"
    names = [r["measure"].split(" (step")[0].split(" to step")[0] for r in rows]
    assert names == ["steps trained in the window", "training speed", "RSS after warm-up", "RSS at the end",
                     "peak RSS sampled", "RSS growth after warm-up", "RSS growth after warm-up"]
    steps, speed, warm, end, peak, growth, growth_before = rows
    assert figure(steps["value"]) == 300
    for row in (speed, warm, end, peak):
        positive(row["value"].split()[0])
    assert figure(end["value"]) <= figure(peak["value"])
    figure(growth["value"])                              # may be negative: memory handed back
    figure(growth_before["value"])
    assert growth["target"] == "< 5 %" and growth_before["target"] == "—"
    for row in rows:
        check_target(row)
