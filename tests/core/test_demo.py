"""The built-in demo: the packaged pretrained MiniLM fine-tuned on two tasks at once must really learn both."""

import pytest

from qarac_gui.cli import main
from qarac_gui.core.paths import resource_path

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_threads")]


def test_demo_trains_both_tasks_well_above_chance_and_exports_usable_models(tmp_path, capsys):
    import json
    out = tmp_path / "demo"
    assert main([str(resource_path("demo", "project.toml")), "--out", str(out), "--jsonl"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    final = [e for e in events if e["event"] == "EvalDone"][-1]["metrics"]
    # Chance is 0.5 accuracy (balanced classes) and 0 rank correlation; the untuned encoder's cosine
    # gives 0.32 Spearman on this validation set.
    assert final["sentiment"]["accuracy"] >= 0.85
    assert final["similarity"]["spearman"] >= 0.40

    from transformers import pipeline
    classify = pipeline("text-classification", model=str(out / "export" / "sentiment"))
    verdicts = classify(["An absolute delight from start to finish, I loved every minute.",
                         "Broken on arrival and the support team never answered. Avoid."])
    assert [v["label"] for v in verdicts] == ["positive", "negative"]
