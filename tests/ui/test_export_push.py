"""The export dialog's "Push to the Hub" section, driven like a user, against the stand-in Hub."""

from __future__ import annotations

import threading

import pytest
from gui import LONG, choose, click, type_into
from hub_server import StandInHub

from tests.core.test_push import exported, logged_in, write_run


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server = StandInHub().start()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)        # as HF_ENDPOINT would set it
    yield server
    server.hold = None
    server.stop()


@pytest.fixture
def dialog(qtbot, tmp_path, monkeypatch, hub, no_dialogs):
    from qarac_gui.ui.dialogs.export_dialog import ExportDialog
    logged_in(tmp_path, monkeypatch)
    run = write_run(tmp_path / "a-run")
    d = ExportDialog(tmp_path / "runs", run)
    qtbot.addWidget(d)
    d.show()
    yield d
    d.jobs.wait()


def push(qtbot, dialog):
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
        click(qtbot, dialog.push_button)


def test_push_one_private_repo_per_chosen_task_with_progress(qtbot, dialog, hub):
    assert dialog.push_private.isChecked()                      # private unless the user says otherwise
    assert not dialog.push_button.isEnabled()                   # no repository named yet
    dialog.checks["full"].setChecked(False)
    type_into(qtbot, dialog.push_repo, "tester/window")
    assert dialog.push_button.isEnabled()
    push(qtbot, dialog)
    assert sorted(hub.repos) == ["tester/window-classification", "tester/window-regression"]
    run = dialog.run_dir()
    for task in ("classification", "regression"):
        repo = hub.repos[f"tester/window-{task}"]
        assert repo.private
        files = exported(run, task)
        del files["README.md"]
        assert {k: v for k, v in repo.files.items() if k != "README.md"} == files
        assert f"`{task}`" in repo.files["README.md"].decode()
    bar = dialog.push_progress
    assert bar.value() == bar.maximum() == 10 and bar.format().startswith("10 of 10 files · ")
    assert f"Pushed to <a href='{hub.url}/tester/window-classification'>" in dialog.push_status.text()
    assert dialog.push_button.isEnabled() and not dialog.push_cancel.isEnabled()


def test_push_one_public_repo_with_a_folder_per_task(qtbot, dialog, hub):
    choose(dialog.push_layout, "one repo, a folder per task")
    dialog.push_private.setChecked(False)
    type_into(qtbot, dialog.push_repo, "tester/together")
    push(qtbot, dialog)
    repo = hub.repos["tester/together"]
    assert list(hub.repos) == ["tester/together"] and not repo.private
    assert {n.split("/")[0] for n in repo.files} == {"README.md", "classification", "regression", "full"}


def test_a_refused_push_says_why_and_can_be_tried_again(qtbot, dialog, hub):
    type_into(qtbot, dialog.push_repo, "acme/theirs")
    push(qtbot, dialog)
    text = dialog.push_status.text()
    assert "Push failed" in text and "no write access to acme (403)" in text and "Traceback" not in text
    assert dialog.push_button.isEnabled() and not dialog.push_progress.isVisible()


def test_cancel_stops_after_the_folder_being_sent(qtbot, dialog, hub):
    hub.hold, hub.fault_on = threading.Event(), "/commit/"          # the first commit waits for the test
    type_into(qtbot, dialog.push_repo, "tester/stopped")
    click(qtbot, dialog.push_button)
    qtbot.waitUntil(lambda: any("/commit/" in r for r in hub.requests), timeout=LONG)
    assert dialog.push_cancel.isEnabled()
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
        click(qtbot, dialog.push_cancel)
        assert "Cancelling" in dialog.push_status.text()
        hub.hold.set()
    assert dialog.push_status.text().startswith("Push cancelled: 1 of 3 folder(s) pushed")
    assert hub.repos["tester/stopped-classification"].files
    assert not hub.repos["tester/stopped-full"].files and not hub.repos["tester/stopped-regression"].files


def test_a_lora_run_pushes_its_adapters_alone_when_the_dialog_says_so(qtbot, tmp_path, monkeypatch, hub, no_dialogs,
                                                                     lora_run):
    # the run exported merged weights; the dialog's choice writes the adapter alone and pushes that, with a card
    # that tells the Hub (and a reader) it is a peft adapter on its base model
    pytest.importorskip("peft")
    from qarac_gui.ui.dialogs.export_dialog import ExportDialog
    logged_in(tmp_path, monkeypatch)
    dialog = ExportDialog(lora_run.parent, lora_run)
    qtbot.addWidget(dialog)
    dialog.show()
    choose(dialog.adapter_combo, "the adapter alone (peft)")
    dialog.checks["full"].setChecked(False)
    type_into(qtbot, dialog.push_repo, "tester/lora")
    push(qtbot, dialog)
    dialog.jobs.wait()
    repo = hub.repos["tester/lora-classification"]
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(repo.files)
    assert "model.safetensors" not in repo.files
    card = repo.files["README.md"].decode()
    assert "library_name: peft" in card and "PeftModel.from_pretrained" in card
    assert not (lora_run / "export" / "classification" / "adapter_config.json").exists()    # the run's own, untouched
