"""Refusals a user can get at once come before the slow part: qarac-train's --out, the dataset search offline."""

from __future__ import annotations

import threading

import pytest
import tomli_w
from hub_server import StandInHub
from tiny import project_dict

from qarac_gui import cli
from qarac_gui.core.errors import UserError


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "project.toml"
    path.write_text(tomli_w.dumps(project_dict("acme/bert", tmp_path / "data", ["classification"])), encoding="utf-8")
    return path


@pytest.fixture
def loads(monkeypatch):
    """Every way the CLI starts reading data or a model, recorded; each ends the command with a plain error."""
    from qarac_gui.core import preflight, run
    from qarac_gui.core.training import setup
    called: list[str] = []

    def loader(name):
        def load(*args, **kwargs):
            called.append(name)
            raise UserError(f"{name} was reached")
        return load
    monkeypatch.setattr(setup, "fetch_hub_data", loader("fetch_hub_data"))
    monkeypatch.setattr(preflight, "preflight", loader("preflight"))
    monkeypatch.setattr(run, "run", loader("run"))
    return called


def _the_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_non_empty_out_folder_is_refused_before_anything_is_loaded(tmp_path, project, loads, capsys):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert cli.main([str(project), "--out", str(out)]) == cli.EXIT_ERROR
    line = _the_error_line(capsys.readouterr().err)
    assert str(out) in line and "not empty" in line
    assert "empty or new folder" in line and "--resume" in line          # what to do instead
    assert loads == []
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "notes.txt"]
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_out_path_that_is_a_file_is_refused_before_anything_is_loaded(tmp_path, project, loads, capsys):
    out = tmp_path / "out.txt"
    out.write_text("mine", encoding="utf-8")
    assert cli.main([str(project), "--out", str(out), "--jsonl"]) == cli.EXIT_ERROR
    captured = capsys.readouterr()
    line = _the_error_line(captured.err)
    assert str(out) in line and "is a file" in line and "empty or new folder" in line
    assert loads == [] and captured.out == ""


@pytest.mark.parametrize("make", ["empty", "new"])
def test_an_empty_or_new_out_folder_goes_on_to_load_the_data(tmp_path, project, loads, capsys, make):
    out = tmp_path / "out"
    if make == "empty":
        out.mkdir()
    assert cli.main([str(project), "--out", str(out)]) == cli.EXIT_ERROR
    assert _the_error_line(capsys.readouterr().err) == "error: fetch_hub_data was reached"
    assert loads == ["fetch_hub_data"]


def test_resume_is_not_refused_for_the_run_its_folder_holds(tmp_path, project, loads, capsys):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    assert cli.main([str(project), "--out", str(out), "--resume"]) == cli.EXIT_ERROR
    assert _the_error_line(capsys.readouterr().err) == "error: run was reached"     # run() checks the checkpoint


def test_the_batch_probe_ignores_out(tmp_path, project, monkeypatch, capsys):
    from qarac_gui.core import probe
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    monkeypatch.setattr(probe, "probe_batches", lambda *a, **k: [probe.BatchFit("classification", 8, 32, 12)])
    assert cli.main([str(project), "--out", str(out), "--find-batch-size"]) == cli.EXIT_OK
    assert "classification: batches of up to 32 rows fit" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# Hub datasets without the Hub


def test_dataset_search_offline_says_so_about_datasets_without_asking():
    from qarac_gui.core.data import hub as hub_data
    from qarac_gui.core.model.hub import HubError
    with pytest.raises(HubError) as raised:
        hub_data.DatasetSearch("reviews")
    assert "offline" in str(raised.value) and "dataset" in str(raised.value) and "model" not in str(raised.value)


@pytest.fixture
def silent_hub(monkeypatch):
    """A stand-in Hub that accepts connections and never answers; huggingface_hub told it is online."""
    from huggingface_hub import constants

    from qarac_gui.core.model import hub
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.forget_hub_failures()
    server = StandInHub()
    server.stall = 3600
    server.start()
    yield server
    server.stop()
    hub.forget_hub_failures()


def test_dataset_search_on_a_silent_hub_fails_once_with_words_about_datasets(silent_hub, monkeypatch, caplog,
                                                                            capfd):
    from qarac_gui.core.data import hub as hub_data
    from qarac_gui.core.model.hub import HubDown
    monkeypatch.setattr(hub_data, "REACH_TIMEOUT", 1.0)
    outcome: list[BaseException] = []

    def search():
        try:
            hub_data.DatasetSearch("reviews", endpoint=silent_hub.url).next_page()
        except BaseException as e:
            outcome.append(e)
    worker = threading.Thread(target=search, daemon=True)
    worker.start()
    worker.join(60)                     # a safety net only: the search gives up after REACH_TIMEOUT
    assert not worker.is_alive(), "the dataset search did not give up on a silent Hub"
    assert len(outcome) == 1 and isinstance(outcome[0], HubDown)
    message = str(outcome[0])
    assert "did not answer" in message and "datasets" in message and "local data file" in message
    assert "model" not in message
    assert len(silent_hub.requests) == 1                     # asked once: no retries
    captured = capfd.readouterr()
    assert "Retry" not in captured.err + captured.out and not [r for r in caplog.records if "Retry" in r.message]


def test_dataset_search_with_nothing_listening_says_the_hub_cannot_be_reached(monkeypatch):
    from huggingface_hub import constants

    from qarac_gui.core.data import hub as hub_data
    from qarac_gui.core.model.hub import HubDown
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(HubDown) as raised:
        hub_data.DatasetSearch("reviews", endpoint="http://127.0.0.1:9")       # nothing listens there
    message = str(raised.value)
    assert "cannot reach the Hub" in message and "datasets" in message and "model" not in message
