"""LoRA in the window: a backbone's adapter settings written into the project (and undone), the trainable and total
parameter counts, and the export dialog's choice between merged weights and the adapter alone."""

import json
import shutil

import pytest
import tiny
from gui import LONG, choose, set_field, type_into

from qarac_gui.core.project.config import parse_project, save_project
from qarac_gui.ui.panels import adapter_fields

pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("torch_threads", "no_dialogs")

LORA = "LoRA: train small adapters (peft)"


def open_project(qtbot, w, tmp_path, model, **backbone):
    raw = tiny.project_dict(model, tmp_path / "data", ["classification"], optim={"head_warmup_steps": 3})
    raw["backbones"]["encoder"] |= backbone
    path = tmp_path / "lora.toml"
    save_project(parse_project(raw, tmp_path), path)
    w.document.load(path)
    w.tabs.setCurrentWidget(w.model_panel)
    panel = w.model_panel
    qtbot.waitUntil(lambda: panel._count_of("encoder") is not None and bool(panel.head_params), timeout=LONG)
    return panel


def counted(qtbot, panel, check):
    """Wait for the count of the backbone's current settings, then hand it over."""
    qtbot.waitUntil(lambda: panel._count_of("encoder") is not None and check(panel._count_of("encoder")),
                    timeout=LONG)
    return panel._count_of("encoder")


def test_choosing_lora_writes_the_keys_counts_the_adapters_and_undo_restores(qtbot, window, tiny_bert, tmp_path):
    w = window
    panel = open_project(qtbot, w, tmp_path, tiny_bert)
    fields = panel.adapter_fields
    full = panel._count_of("encoder")
    heads = panel.head_params["classification"]
    # full fine-tuning: all but the encoder's own pooler (heads pool for themselves) and the position table
    assert full.adapters == 0 and 0.9 * full.total < full.trainable < full.total
    share = 100 * (full.trainable + heads) / (full.total + heads)
    assert f"Trains {(full.trainable + heads) / 1e3:.1f} k of {(full.total + heads) / 1e3:.1f} k parameters " \
           f"({share:.1f} %)" in panel.totals.text()
    assert f"first 3 steps (head warm-up) only the heads train: {heads / 1e3:.1f} k" in panel.totals.text()
    for widget in (fields.scope, fields.rank, fields.alpha, fields.dropout, fields.targets):
        assert not widget.isEnabled() and "Not used now" in widget.toolTip()
    assert fields.peft_note.isHidden()

    choose(fields.adapter, LORA)
    assert w.document.project.backbones["encoder"].adapter == "lora"
    lora = counted(qtbot, panel, lambda c: c.adapters > 0)
    # rank 8 on query and value of 2 layers of width 16: 2 * 2 * 8 * (16 + 16)
    assert lora.adapters == lora.trainable == 2048 and lora.adapted == ("query", "value")
    assert lora.total == full.total + lora.adapters and lora.trainable < lora.total / 10
    assert "LoRA, rank 8: query, value" in panel.summary.topLevelItem(0).text(1)
    share = 100 * (lora.trainable + heads) / (lora.total + heads)
    assert f"Trains {(lora.trainable + heads) / 1e3:.1f} k of {(lora.total + heads) / 1e3:.1f} k parameters " \
           f"({share:.1f} %)" in panel.totals.text()
    assert "(here: query, value)" in fields.targets.placeholderText()
    assert all(widget.isEnabled() for widget in (fields.scope, fields.rank, fields.alpha, fields.targets))

    set_field(qtbot, panel, "lora_rank", "4")
    type_into(qtbot, fields.targets, "query, key value")
    choose(fields.scope, "one adapter per task")
    bb = w.document.project.backbones["encoder"]
    assert (bb.lora_rank, bb.lora_targets, bb.adapter_scope) == (4, ["query", "key", "value"], "per_task")
    assert counted(qtbot, panel, lambda c: c.adapted == ("key", "query", "value")).adapters == 3 * 2 * 2 * 4 * 32

    for _ in range(3):
        w.actions_by_name["undo"].trigger()
    bb = w.document.project.backbones["encoder"]
    assert (bb.adapter, bb.lora_rank, bb.lora_targets, bb.adapter_scope) == ("lora", 8, [], "shared")
    assert counted(qtbot, panel, lambda c: c.adapters == 2048)
    assert fields.rank.value() == 8 and fields.targets.text() == ""
    w.actions_by_name["undo"].trigger()
    assert w.document.project.backbones["encoder"].adapter == "none"
    assert counted(qtbot, panel, lambda c: c.adapters == 0).trainable == full.trainable
    assert not fields.rank.isEnabled()


def test_frozen_layers_count_and_a_missing_peft_is_said_beside_the_choice(qtbot, window, tiny_bert, tmp_path,
                                                                          monkeypatch):
    w = window
    panel = open_project(qtbot, w, tmp_path, tiny_bert, adapter="lora", freeze_layers=1)
    lora = panel._count_of("encoder")
    assert lora.trainable == lora.adapters // 2       # the bottom layer's adapters stay frozen with it
    assert "bottom 1 layers frozen" in panel.summary.topLevelItem(0).text(1)

    monkeypatch.setattr(adapter_fields, "peft_missing", lambda: True)
    w.document.set_value("backbones.encoder.adapter", "none")
    fields = panel.adapter_fields
    assert not fields.peft_note.isHidden() and "pip install peft" in fields.peft_note.text()
    assert "qarac-gui[peft]" in fields.peft_note.text()
    assert not fields.adapter.model().item(1).isEnabled()       # LoRA cannot be chosen without peft


# ------------------------------------------------------------------------------------------------ export dialog


def export_with(qtbot, dialog, destination, words):
    choose(dialog.adapter_combo, words)
    dialog.checks["full"].setChecked(False)
    dialog.destination.setText(str(destination))
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
        dialog.export_button.click()
    assert "Done: 1 folder(s)" in dialog.summary.text(), dialog.summary.text()
    return destination / "classification"


def logits(model, tokenizer):
    import torch
    with torch.no_grad():
        return model(**tokenizer(["the film was good", "awful"], return_tensors="pt", padding=True)).logits


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")   # inside peft
def test_export_dialog_writes_the_adapter_alone_or_merged_weights(qtbot, lora_run, tiny_bert, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from qarac_gui.ui.dialogs.export_dialog import ExportDialog
    dialog = ExportDialog(lora_run.parent, lora_run)
    qtbot.addWidget(dialog)
    assert not dialog.adapter_box.isHidden() and dialog.adapter_combo.isEnabled()
    assert dialog.adapter_combo.currentText() == "merged weights (plain transformers)"
    assert "The run wrote: merged weights" in dialog.adapter_note.text()

    alone = export_with(qtbot, dialog, tmp_path / "alone", "the adapter alone (peft)")
    files = {p.name for p in alone.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
    assert json.loads((alone / "adapter_config.json").read_text())["r"] == 4
    from qarac_gui.core.results.onnx_export import onnx_problem
    assert "LoRA adapter alone" in onnx_problem(alone)         # ONNX says why it leaves such a folder out
    tokenizer = AutoTokenizer.from_pretrained(alone)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    peft_model = PeftModel.from_pretrained(base, alone).eval()
    merged_by_run = AutoModelForSequenceClassification.from_pretrained(lora_run / "export" / "classification").eval()
    import torch
    torch.testing.assert_close(logits(peft_model, tokenizer), logits(merged_by_run, tokenizer), atol=1e-5, rtol=1e-5)

    dialog2 = ExportDialog(lora_run.parent, lora_run)
    qtbot.addWidget(dialog2)
    merged = export_with(qtbot, dialog2, tmp_path / "merged", "merged weights (plain transformers)")
    files = {p.name for p in merged.iterdir()}
    assert {"config.json", "model.safetensors"} <= files and "adapter_config.json" not in files
    plain = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    torch.testing.assert_close(logits(plain, tokenizer), logits(merged_by_run, tokenizer))


def test_export_dialog_hides_the_choice_without_lora_and_says_why_it_cannot_rewrite(qtbot, tiny_bert, tmp_path):
    from qarac_gui.ui.dialogs.export_dialog import ExportDialog
    raw = tiny.project_dict(tiny_bert, tmp_path / "data", ["classification"])
    for name, adapter in (("plain", "none"), ("no-full", "lora")):
        raw["backbones"]["encoder"]["adapter"] = adapter
        run_dir = tmp_path / "runs" / name
        (run_dir / "export" / "classification").mkdir(parents=True)
        save_project(parse_project(raw, tmp_path), run_dir / "project.toml")
    dialog = ExportDialog(tmp_path / "runs", tmp_path / "runs" / "plain")
    qtbot.addWidget(dialog)
    assert dialog.adapter_box.isHidden() and dialog.adapter_choice() == ""

    dialog = ExportDialog(tmp_path / "runs", tmp_path / "runs" / "no-full")
    qtbot.addWidget(dialog)
    assert not dialog.adapter_box.isHidden() and not dialog.adapter_combo.isEnabled()
    assert "export.full_model = false" in dialog.adapter_note.text() and dialog.adapter_choice() == ""
    shutil.rmtree(tmp_path / "runs")


def test_adapter_and_freezing_edits_count_again_without_reading_the_model_again(qtbot, window, tiny_bert, tmp_path):
    w = window
    panel = open_project(qtbot, w, tmp_path, tiny_bert)
    loads = []
    w.checks.model_loading.connect(loads.append)
    encoder = w.checks.encoder
    choose(panel.adapter_fields.adapter, LORA)
    counted(qtbot, panel, lambda c: c.adapters > 0)
    w.document.set_value("backbones.encoder.freeze_layers", 1)
    counted(qtbot, panel, lambda c: c.adapters > 0 and c.trainable < 2048)
    assert loads == [] and w.checks.encoder is encoder
    w.document.set_value("backbones.encoder.role", "decoder")       # read another way: loaded again
    qtbot.waitUntil(lambda: loads == [str(tiny_bert)], timeout=LONG)
