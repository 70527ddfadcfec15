"""The GPU benchmark: its FLOPs and MFU arithmetic by hand, and its --smoke table (structure, not speed)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benches" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()

# roberta-base by hand: per layer, Q K V and the attention output (4 x (768 x 768 + 768) = 2,362,368), the
# feed-forward pair (768 x 3072 + 3072 + 3072 x 768 + 768 = 4,722,432) and two layer norms (2 x 1,536 = 3,072):
# 7,087,872; times 12 layers.
ROBERTA_BASE_N = 85_054_464


def test_roberta_base_has_85m_non_embedding_parameters():
    assert bench.non_embedding_params(12, 768, 3072) == 12 * 7_087_872 == ROBERTA_BASE_N


def test_flops_per_token_is_6n_plus_12_l_d_s():
    # 6 x 85,054,464 = 510,326,784; 12 x 12 x 768 x 128 = 14,155,776
    assert bench.flops_per_token(ROBERTA_BASE_N, 12, 768, 128) == 524_482_560
    # a batch of texts counts each at its own length: two of 128 tokens and one of 10
    assert bench.sequence_flops([128, 128, 10], ROBERTA_BASE_N, 12, 768) == (
        2 * 128 * 524_482_560 + 10 * (510_326_784 + 12 * 12 * 768 * 10))


def test_mfu_is_achieved_over_peak_and_none_without_a_peak():
    achieved = 1_000_000 * 524_482_560            # a million tokens/s of roberta-base at 128 tokens
    assert bench.mfu(achieved, 989.0) == pytest.approx(524.48256 / 989.0)      # 53.0 %
    assert bench.mfu(achieved, None) is None


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0),
    ("NVIDIA GH200 480GB", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A10", 125.0), ("NVIDIA L4", 121.0),
    ("NVIDIA L40S", 362.0), ("Tesla T4", None)])
def test_peak_is_looked_up_by_the_devices_name(name, peak):
    assert bench.peak_for(name) == peak


def test_parameter_formula_matches_a_real_encoder():
    from transformers import RobertaConfig, RobertaModel
    config = RobertaConfig(**bench.SMOKE_CONFIG)
    model = RobertaModel(config)
    assert bench.non_embedding_params(config.num_hidden_layers, config.hidden_size, config.intermediate_size) == sum(
        p.numel() for p in model.encoder.parameters())


def test_compile_is_detected_from_what_the_project_file_accepts():
    from qarac_gui.core.project.config import TrainConfig
    assert bench.compile_supported() == ("compile" in {f.name for f in dataclasses.fields(TrainConfig)})


def table_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) > 2, f"no markdown table in the output:\n{text}"
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]


def positive(cell: str) -> float:
    value = float(cell.rstrip("%"))
    assert math.isfinite(value) and value > 0, cell
    return value


@pytest.mark.slow
def test_smoke_prints_every_setting_with_finite_figures():
    out = subprocess.run([sys.executable, str(ROOT / "benches" / "gpu.py"), "--smoke", "--peak-tflops", "0.5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    rows = table_rows(out.stdout)
    assert [(r["batch"], r["lengths"], r["mode"]) for r in rows] == [
        (b, lengths, mode) for b in ("4", "8") for lengths in ("fixed", "variable") for mode in ("eager", "compiled")]
    for row in rows:
        if row["mode"] == "compiled" and row["note"]:     # --smoke runs eager only; or the engine has no compile
            assert row["note"] in (bench.NOT_AVAILABLE, "compiled: not run (not in --modes)")
            assert row["samples/s"] == ""
            continue
        assert row["note"] == "", row
        for column in ("samples/s", "non-pad tokens/s", "peak RSS (MB)", "TFLOPS (non-pad)", "MFU"):
            positive(row[column])
        padding = float(row["padding"].rstrip("%"))
        if row["lengths"] == "fixed":
            assert padding == 0.0, row          # every text reaches max_length: nothing to pad
        else:
            assert 0 < padding < 100, row
            positive(row["vs fixed (target >= 0.85)"].split("**")[1])
    assert "FLOPs per token = 6N + 12 L d s" in out.stdout
    assert "N = 99,968 non-embedding parameters" in out.stdout
