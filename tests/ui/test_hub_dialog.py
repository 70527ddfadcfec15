"""The Hub dialog against the stand-in Hub: search, page, inspect, download with progress, cancel, offline."""

import pytest
from hub_server import StandInHub
from tiny import make_model_folder

from qarac_gui.ui.dialogs.hub_dialog import HubDialog

LONG = 60_000


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("hubgui") / "mlm", "bert", head="mlm")


@pytest.fixture
def hub(monkeypatch, tiny_mlm):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server = StandInHub().start()
    for i in range(5):
        server.add_folder(f"acme/bert-{i}", tiny_mlm, downloads=100 * (5 - i), likes=i)
    server.add_folder("acme/gated", tiny_mlm, gated=True)
    yield server
    server.stop()


def test_search_page_inspect_and_download(qtbot, hub, tmp_path):
    dialog = HubDialog(endpoint=hub.url, cache_dir=str(tmp_path / "hf"), page_size=3)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.query, "bert")
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG, check_params_cb=lambda k, r: k == "search"):
        dialog.search_button.click()
    assert [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())] == \
        ["acme/bert-0", "acme/bert-1", "acme/bert-2"]
    assert dialog.table.item(0, 1).text() == "500" and dialog.more_button.isEnabled()
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG, check_params_cb=lambda k, r: k == "more"):
        dialog.more_button.click()
    assert dialog.table.rowCount() == 5 and not dialog.more_button.isEnabled()

    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG, check_params_cb=lambda k, r: k == "details"):
        dialog.table.selectRow(1)
    assert dialog.facts["architecture"].text() == "BertForMaskedLM (bert)"
    assert dialog.facts["removed"].text() == "BertForMaskedLM head"
    assert dialog.facts["access"].text() == "public" and dialog.download_button.isEnabled()

    with qtbot.waitSignal(dialog.chosen, timeout=LONG) as chosen:
        dialog.download_button.click()
    assert chosen.args == ["acme/bert-1"]
    assert dialog.progress.value() == 1000 and "of" in dialog.progress.format()
    assert "In the Hugging Face cache" in dialog.status.text()


@pytest.mark.slow
def test_cancel_a_download_then_retry(qtbot, hub, tmp_path):
    dialog = HubDialog(endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG, check_params_cb=lambda k, r: k == "details"):
        dialog.show_details("acme/bert-3")
    hub.slow = 0.05                       # ~3 s for the weights: time to press Cancel half-way
    dialog.download_button.click()
    qtbot.waitUntil(lambda: 0 < dialog._progress.done < dialog._progress.total, timeout=LONG)   # small files first
    seen = []
    dialog.jobs.finished.connect(lambda k, r: seen.append((k, r)))
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: any(k == "download" for k, _ in seen), timeout=20000)
    assert "cancelled" in dialog.status.text() and dialog.download_button.isEnabled()
    hub.slow = 0.0
    with qtbot.waitSignal(dialog.chosen, timeout=LONG):
        dialog.download_button.click()


def test_offline_mode_offers_only_cached_models(qtbot, hub, monkeypatch, tmp_path):
    from qarac_gui.core.model import hub as qhub
    qhub.download_model("acme/bert-2", endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    dialog = HubDialog(endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1, timeout=LONG)
    assert "Offline" in dialog.offline_label.text() and dialog.offline_label.isVisible()
    assert not dialog.search_button.isEnabled() and dialog.table.item(0, 0).text() == "acme/bert-2"
    dialog.table.selectRow(0)
    assert dialog.download_button.text() == "Use cached model"
    with qtbot.waitSignal(dialog.chosen, timeout=LONG) as chosen:
        dialog.download_button.click()
    assert chosen.args == ["acme/bert-2"] and hub.requests == []


def test_model_panel_opens_the_dialog_and_uses_the_downloaded_model(qtbot, hub, tmp_path, monkeypatch):
    from qarac_gui.ui.main_window import MainWindow
    monkeypatch.setenv("QARAC_GUI_DATA", str(tmp_path / "data"))
    window = MainWindow()
    window.show()
    dialog = window.hub_dialog(endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)     # the load below must not try the public Hub
    window._on_hub_chosen("acme/bert-0")
    assert window.document.project.backbones["encoder"].model == "acme/bert-0"
    dialog.close()
    window.document.reset()
    window.close()


def test_log_in_from_the_dialog_keeps_the_token_out_of_the_app(qtbot, hub, tmp_path, monkeypatch):
    from hub_server import TOKEN
    from huggingface_hub import constants
    from huggingface_hub.hf_api import api
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "stored_tokens"))
    monkeypatch.setattr(api, "endpoint", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("QARAC_GUI_DATA", str(tmp_path / "data"))
    from qarac_gui.ui.main_window import MainWindow
    window = MainWindow()
    window.show()
    dialog = window.hub_dialog(endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    dialog.chosen.disconnect(window._on_hub_chosen)             # loading it would go to the public Hub
    qtbot.keyClicks(dialog.token_edit, TOKEN)
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG, check_params_cb=lambda k, r: k == "login"):
        dialog.login_button.click()
    assert dialog.user_label.text().startswith("Logged in as tester") and dialog.token_edit.text() == ""
    assert (tmp_path / "hf-home" / "token").read_text().strip() == TOKEN
    with qtbot.waitSignal(dialog.chosen, timeout=LONG):          # a gated model now downloads
        dialog.show_details("acme/gated")
        qtbot.waitUntil(dialog.download_button.isEnabled, timeout=LONG)
        dialog.download_button.click()
    window.document.save(tmp_path / "project.toml")
    written = [p for p in (tmp_path / "data").rglob("*") if p.is_file()] + [tmp_path / "project.toml"]
    assert all(TOKEN not in p.read_text(errors="ignore") for p in written)
    assert TOKEN not in "\n".join(window.log.lines())
    dialog.close()
    window.document.reset()
    window.close()


def test_no_network_switches_the_dialog_to_cached_models(qtbot, monkeypatch, tmp_path):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    dialog = HubDialog(endpoint="http://127.0.0.1:9", cache_dir=str(tmp_path / "hf"))   # nothing listens there
    qtbot.addWidget(dialog)
    dialog.query.setText("bert")
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG, check_params_cb=lambda k, r: k == "search"):
        dialog.search_button.click()
    assert "cannot reach the Hub" in dialog.status.text()
    assert dialog.offline and "No network" in dialog.offline_label.text()
    assert dialog.download_button.text() == "Use cached model" and not dialog.search_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.jobs.busy, timeout=LONG)         # the login check, which failed too
    assert not dialog.login_button.isEnabled()


def test_details_is_off_without_the_hub_and_says_why(qtbot, tmp_path):
    from qarac_gui.ui.dialogs.dataset_dialog import DatasetDialog
    for dialog in (HubDialog(cache_dir=str(tmp_path / "hf")), DatasetDialog()):   # the tests run with HF_HUB_OFFLINE=1
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitUntil(dialog.offline_label.isVisible, timeout=LONG)
        dialog.query.setText("acme/bert-2")
        assert not dialog.details_button.isEnabled()
        assert dialog.details_button.toolTip().startswith("Not now: the Hub cannot be reached")
        if isinstance(dialog, HubDialog):
            assert not dialog.login_button.isEnabled() and not dialog.token_edit.isEnabled()
            assert dialog.login_button.toolTip().startswith("Not now: logging in checks the token with the Hub")


def test_details_waits_for_an_id_to_look_up(qtbot, hub, tmp_path):
    dialog = HubDialog(endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.details_button.isEnabled() and "Type an id" in dialog.details_button.toolTip()
    qtbot.keyClicks(dialog.query, "acme/bert-1")
    assert dialog.details_button.isEnabled() and "details of the id typed" in dialog.details_button.toolTip()
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG, check_params_cb=lambda k, r: k == "details"):
        dialog.details_button.click()
    assert dialog.facts["architecture"].text() == "BertForMaskedLM (bert)"
