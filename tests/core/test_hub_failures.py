"""A Hub that stalls, fails or cuts a download off: every Hub call says what is wrong in the app's words, within a
bounded time, and a cut or damaged download does not break the next run.

The tests shrink huggingface_hub's own request limits (HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT) to LIMIT
seconds; with their 10 s defaults the same failures take about five times longer. A new run is a new process, with
no record of the Hub's recent failures: in-process tests forget them between "runs".
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomli_w
from hub_server import StandInHub
from tiny import make_model_folder, project_dict

from qarac_gui.core.model import hub as qhub

LIMIT = 2               # seconds a request may stay silent, in these tests
REPO = "acme/tiny-bert"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("hubfail") / "bert", "bert")


@pytest.fixture
def hub(monkeypatch, tiny):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", LIMIT)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", LIMIT)
    qhub.forget_hub_failures()
    server = StandInHub().start()
    server.add_folder(REPO, tiny)
    yield server
    server.stop()
    qhub.forget_hub_failures()


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    try:
        return fn(*args, **kwargs), None, time.monotonic() - started
    except Exception as e:
        return None, e, time.monotonic() - started


def download(hub, tmp_path, **kwargs):
    return qhub.download_model(REPO, endpoint=hub.url, cache_dir=str(tmp_path / "hf"), **kwargs)


def blob_of(folder: str, name: str) -> Path:
    return Path(folder, name).resolve()


# ---------------------------------------------------------------------------------------------------------------
# Search, details and download on a misbehaving Hub


@pytest.mark.slow
@pytest.mark.parametrize("status", [500, 503])
def test_a_search_on_a_failing_hub_says_server_error_without_23_s_of_retries(hub, status):
    hub.status, hub.fault_on = status, "GET /api/models"
    _, error, elapsed = timed(lambda: qhub.ModelSearch("bert", endpoint=hub.url).next_page())
    assert isinstance(error, qhub.HubDown), error
    assert str(error) == f"model search: the Hub had a server error ({status}); try again later"
    assert elapsed < 15         # huggingface_hub's own five retries wait 1+2+4+8+8 s


@pytest.mark.slow
def test_details_from_a_stalled_hub_say_it_did_not_answer(hub):
    hub.stall = 60
    _, error, elapsed = timed(qhub.model_details, REPO, endpoint=hub.url)
    assert isinstance(error, qhub.HubDown), error
    assert str(error).startswith(f"{REPO}: the Hub did not answer in time")
    assert elapsed < 4 * LIMIT


@pytest.mark.slow
def test_a_download_whose_files_stall_ends_with_a_plain_message(hub, tmp_path):
    hub.stall, hub.fault_on = 60, "/resolve/"       # the model's page answers, its files never come
    _, error, elapsed = timed(download, hub, tmp_path)
    assert isinstance(error, qhub.HubDown), error
    assert str(error).startswith(f"{REPO}: the Hub did not answer in time"), error
    assert elapsed < 30         # huggingface_hub alone asks again with a 60 s limit, six times


@pytest.mark.parametrize("status,words", [(502, r"the Hub had a server error \(502\); try again later"),
                                          (404, r"a file it needs \((config|tokenizer|model)\S*\) is not on the Hub")],
                         ids=["502", "404"])
def test_a_download_whose_files_fail_names_the_problem(hub, tmp_path, status, words):
    hub.status, hub.fault_on = status, "/resolve/"
    _, error, elapsed = timed(download, hub, tmp_path)
    assert isinstance(error, qhub.HubError), error
    assert re.match(f"{REPO}: {words}", str(error)), error
    assert elapsed < 15


@pytest.mark.slow
def test_a_download_cut_half_way_then_refused_leaves_nothing_that_breaks_the_next_run(hub, tmp_path, tiny):
    hub.cut_after, hub.cut_then = 40_000, 503          # the weights (~120 kB) break off, then the Hub fails
    _, error, elapsed = timed(download, hub, tmp_path)
    assert isinstance(error, qhub.HubDown), error
    assert str(error).startswith(f"{REPO}: the Hub had a server error (503)"), error
    assert elapsed < 15
    assert not list((tmp_path / "hf").rglob("*.incomplete"))          # no partial file is kept
    hub.status = 0
    qhub.forget_hub_failures()
    folder = download(hub, tmp_path)
    assert Path(folder, "model.safetensors").read_bytes() == (tiny / "model.safetensors").read_bytes()


def test_a_part_left_by_a_killed_download_is_cleared_and_the_model_arrives(hub, tmp_path, tiny):
    blobs = tmp_path / "hf" / "models--acme--tiny-bert" / "blobs"
    blobs.mkdir(parents=True)
    stale, live = blobs / "0123abcd.5e6f7a8b.incomplete", blobs / "4567cdef.9a0b1c2d.incomplete"
    stale.write_bytes(b"x" * 50_000)
    live.write_bytes(b"y" * 1000)                          # another process is writing this one right now
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    folder = download(hub, tmp_path)
    assert Path(folder, "model.safetensors").read_bytes() == (tiny / "model.safetensors").read_bytes()
    assert not stale.exists() and live.exists()


# ---------------------------------------------------------------------------------------------------------------
# A damaged Hugging Face cache


@pytest.mark.parametrize("name,damage", [("model.safetensors", "truncate"), ("model.safetensors", "flip"),
                                         ("config.json", "flip")])
def test_a_damaged_cached_file_is_fetched_again(hub, tmp_path, tiny, name, damage):
    folder = download(hub, tmp_path)
    blob = blob_of(folder, name)
    data = blob.read_bytes()
    blob.write_bytes(data[:len(data) // 2] if damage == "truncate" else
                     data[:100] + bytes([data[100] ^ 0x01]) + data[101:])
    hub.requests.clear()
    assert download(hub, tmp_path) == folder
    assert Path(folder, name).read_bytes() == (tiny / name).read_bytes()
    assert [r for r in hub.requests if r.startswith("GET") and r.endswith("/" + name)]


def _flip_weights(folder: str) -> Path:
    blob = blob_of(folder, "model.safetensors")
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    return blob


def test_a_damaged_cache_with_the_hub_down_names_the_entry_to_delete(hub, tmp_path):
    folder = download(hub, tmp_path)
    blob = _flip_weights(folder)
    hub.status = 503
    _, error, elapsed = timed(qhub.model_folder, REPO, cache_dir=str(tmp_path / "hf"))
    assert isinstance(error, qhub.HubError), error
    assert f"{REPO}: model.safetensors in the Hugging Face cache is damaged" in str(error)
    assert f"delete {blob}" in str(error)
    assert elapsed < 15


def test_a_damaged_cache_offline_names_the_entry_to_delete(hub, tmp_path, monkeypatch):
    folder = download(hub, tmp_path)
    blob = _flip_weights(folder)
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(qhub.HubError, match="model.safetensors in the Hugging Face cache is damaged .*offline") as e:
        qhub.download_model(REPO, cache_dir=str(tmp_path / "hf"))
    assert f"delete {blob}" in str(e.value)


def test_a_complete_cache_stands_in_for_a_stalled_hub(hub, tmp_path):
    folder = download(hub, tmp_path)
    hub.stall = 60
    got, error, elapsed = timed(qhub.model_folder, REPO, cache_dir=str(tmp_path / "hf"))
    assert error is None and got == folder
    assert elapsed < 4 * LIMIT


def test_transformers_own_hub_errors_are_told_in_the_apps_words():
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError

    from qarac_gui.core.model.backbone import _explain_load_error
    try:
        try:
            try:
                raise httpx2.ReadTimeout("timed out")
            except httpx2.ReadTimeout as e:
                raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub") from e
        except LocalEntryNotFoundError as e:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from e
    except OSError as e:
        error = e
    assert _explain_load_error(REPO, error) == \
        f"model {REPO!r}: the Hub did not answer in time; check the connection and try again"


# ---------------------------------------------------------------------------------------------------------------
# Loading a Hub model for a run, in a process of its own (HF_ENDPOINT is read once, at import)

CHILD = """
import json, sys, time, threading
from pathlib import Path
from qarac_gui.core.model import hub
from qarac_gui.core.model.backbone import load_backbone
from qarac_gui.core.project.config import BackboneConfig, load_project
from qarac_gui.core.run import run
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    ask = json.loads(line)
    hub.forget_hub_failures()                   # each ask stands for a new run, in a new process
    started = time.monotonic()
    try:
        if ask.get("project"):
            run(load_project(ask["project"]), lambda event: None, threading.Event(), run_dir=Path(ask["run_dir"]))
            answer = {"ok": True}
        else:
            loaded = load_backbone(BackboneConfig(model=ask["model"]), Path("."), cache_dir=ask["cache"])
            answer = {"ok": True, "hidden": loaded.model.config.hidden_size}
    except Exception as e:
        answer = {"ok": False, "type": type(e).__name__, "message": str(e)}
    answer["elapsed"] = time.monotonic() - started
    print(json.dumps(answer), flush=True)
"""


class Child:
    """A process that loads Hub models when asked, against the stand-in Hub, one JSON line per ask."""

    def __init__(self, hub: StandInHub, home: Path) -> None:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(home / "hf-home"),
               "HF_HUB_ETAG_TIMEOUT": str(LIMIT), "HF_HUB_DOWNLOAD_TIMEOUT": str(LIMIT),
               "QARAC_GUI_DATA": str(home / "data"), "QARAC_GUI_CACHE": str(home / "cache")}
        self.process = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(x) for x in self.process.stdout], daemon=True).start()
        assert self.answer(120).get("ready")

    def answer(self, timeout: float) -> dict:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            pytest.fail(f"no answer in {timeout} s")

    def ask(self, timeout: float = 90, **ask) -> dict:
        self.process.stdin.write(json.dumps(ask) + "\n")
        self.process.stdin.flush()
        return self.answer(timeout)

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@pytest.fixture(scope="module")
def remote(tiny, tmp_path_factory):
    server = StandInHub().start()
    server.add_folder(REPO, tiny)
    child = Child(server, tmp_path_factory.mktemp("child"))
    yield server, child
    child.close()
    server.stop()


@pytest.fixture
def child(remote):
    server, child = remote
    server.stall, server.status, server.fault_on, server.cut_after, server.cut_then = 0, 0, "", 0, 0
    return server, child


@pytest.mark.slow
@pytest.mark.parametrize("fault,words", [
    ({"stall": 3600}, "the Hub did not answer in time"),
    ({"status": 500}, "the Hub had a server error (500)"),
    ({"stall": 3600, "fault_on": "/resolve/"}, "the Hub did not answer in time"),
    ({"status": 503, "fault_on": "/resolve/"}, "the Hub had a server error (503)"),
], ids=["stalled", "500", "files stall", "files 503"])
def test_loading_a_hub_model_from_a_failing_hub_says_what_is_wrong(child, tmp_path, fault, words):
    server, process = child
    for key, value in fault.items():
        setattr(server, key, value)
    answer = process.ask(model=REPO, cache=str(tmp_path / "hf"))
    assert answer["type"] == "ModelLoadError", answer
    assert answer["message"].startswith(f"{REPO}: {words}"), answer
    assert "couldn't connect" not in answer["message"] and "An error happened" not in answer["message"]
    assert answer["elapsed"] < 30, answer


@pytest.mark.slow
def test_a_run_on_a_stalled_hub_fails_in_the_apps_words_and_the_next_one_after_a_cut_download_trains(child, tmp_path,
                                                                                                    tiny):
    server, process = child
    raw = project_dict(tiny, tmp_path / "data", ["classification"], train={"max_steps": 2})
    raw["backbones"]["encoder"]["model"] = REPO
    project = tmp_path / "hub.toml"
    project.write_text(tomli_w.dumps(raw), encoding="utf-8")
    server.stall = 3600
    answer = process.ask(project=str(project), run_dir=str(tmp_path / "run1"))
    assert answer["type"] == "ModelLoadError" and answer["message"].startswith(f"{REPO}: the Hub did not answer")
    assert answer["elapsed"] < 30, answer
    server.stall, server.cut_after, server.cut_then = 0, 40_000, 502
    answer = process.ask(project=str(project), run_dir=str(tmp_path / "run2"))
    # files come down four at a time: the one cut off and the 502s after it race, and either is what went wrong
    said = ("the Hub had a server error (502)", "the connection to the Hub broke off during the download")
    assert answer["type"] == "ModelLoadError" and any(s in answer["message"] for s in said), answer
    server.status = 0
    assert process.ask(project=str(project), run_dir=str(tmp_path / "run3"), timeout=180)["ok"]
    assert (tmp_path / "run3" / "export").is_dir()
