"""Hub datasets for a task's data, through the real `datasets` calls pointed at the stand-in Hub.

`datasets` reads HF_ENDPOINT when it is imported, so these calls run in a subprocess with the stand-in's address
in its environment; the code paths are the app's own.
"""

import json
import os
import subprocess
import sys

import pytest
from hub_server import Repo, StandInHub
from tiny import make_model_folder

from qarac_gui.core.data import hub as hub_data

ROWS = [("good film %d" % i, "pos") if i % 2 == 0 else ("bad film %d" % i, "neg") for i in range(40)]
CSV = ("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in ROWS)).encode()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = StandInHub().start()
    server.add_dataset(Repo("acme/reviews", {"train.csv": CSV, "test.csv": CSV[:300].rsplit(b"\n", 1)[0] + b"\n"},
                            downloads=70))
    server.add_dataset(Repo("acme/other-reviews", {"train.csv": CSV}, downloads=5))
    server.add_dataset(Repo("acme/news", {"train.csv": CSV}, downloads=90))
    model = make_model_folder(tmp_path_factory.mktemp("hubdata") / "bert", "bert")
    server.add_folder("acme/tiny-bert", model)
    yield server
    server.stop()


def run_with_hub(hub, tmp_path, args, code=None):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"),
           "HF_DATASETS_CACHE": str(tmp_path / "ds-cache"), "QARAC_GUI_DATA": str(tmp_path / "data"),
           "QARAC_GUI_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-c", code] if code else [sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def hub_project(path, model, rest):
    """A one-task project on a Hub model and the stand-in's acme/reviews dataset; `rest` adds sections."""
    path.write_text(f"""version = 1
name = "from-the-hub"
[backbones.encoder]
model = "{model}"
[[tasks]]
name = "sentiment"
batch_size = 8
max_length = 16
[tasks.data]
hub = "acme/reviews"
validation_split = "test"
{rest}""", encoding="utf-8")
    return path


def details(hub, tmp_path, *args):
    code = ("import json, dataclasses, sys\nfrom qarac_gui.core.data import hub as hub_data\n"
            "from qarac_gui.core.model import hub\n"
            "try:\n"
            f"    d = hub_data.dataset_details(*{list(args)!r})\n"
            "    print(json.dumps(dataclasses.asdict(d)))\n"
            "except hub.HubError as e:\n"
            "    print(json.dumps({'error': str(e)}))\n")
    result = run_with_hub(hub, tmp_path, [], code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_search_datasets(hub, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    search = hub_data.DatasetSearch("reviews", endpoint=hub.url, page_size=10)
    assert [h.id for h in search.next_page()] == ["acme/reviews", "acme/other-reviews"] and search.exhausted
    everything = hub_data.DatasetSearch(endpoint=hub.url).next_page()
    assert [h.id for h in everything][:1] == ["acme/news"] and everything[0].downloads == 90


@pytest.mark.slow
def test_configs_splits_features_and_first_rows(hub, tmp_path):
    d = details(hub, tmp_path, "acme/reviews")
    assert d["configs"] == ["default"] and d["config"] == "default"
    assert d["splits"] == ["train", "test"]
    assert d["features"] == {"text": "string", "label": "string"}
    assert [(r["text"], r["label"]) for r in d["rows"]] == ROWS[:10]


@pytest.mark.slow
def test_a_missing_split_or_dataset_is_a_clear_message(hub, tmp_path):
    assert details(hub, tmp_path, "acme/reviews", None, "validation")["error"] == \
        "acme/reviews: no split 'validation' in config 'default' (it has: train, test)"
    assert "acme/missing" in details(hub, tmp_path, "acme/missing")["error"]


@pytest.mark.slow
def test_train_a_hub_model_on_a_hub_dataset_from_the_command_line(hub, tmp_path):
    project = hub_project(tmp_path / "hub.toml", "acme/tiny-bert", "[train]\nmax_steps = 3\nlog_every = 1\n")
    result = run_with_hub(hub, tmp_path, ["-m", "qarac_gui.cli", str(project), "--out", str(tmp_path / "run"),
                                          "--jsonl"])
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    started = next(e for e in events if e["event"] == "RunStarted")
    assert started["tasks"]["sentiment"]["train_rows"] == 40 and started["tasks"]["sentiment"]["labels"] == \
        ["neg", "pos"]
    assert (tmp_path / "run" / "export" / "sentiment" / "config.json").is_file()
    # the dataset's files came down with byte progress before load_dataset read them from the cache
    downloads = [e for e in events if e["event"] == "Progress" and e["phase"] == "download"]
    size = len(CSV) + len(CSV[:300].rsplit(b"\n", 1)[0] + b"\n")
    fetched = [e for e in downloads if e["message"].startswith("Downloading acme/reviews")]
    assert fetched and fetched[-1]["done"] == fetched[-1]["total"] == size, downloads
    assert [e["done"] for e in fetched] == sorted(e["done"] for e in fetched)
    assert downloads[-1]["message"] == "acme/reviews: 0.0 MB, already in the cache"     # the run's own look
    # both came through the stand-in, into the HF cache of that environment
    assert any("/datasets/acme/reviews/resolve/" in r for r in hub.requests)
    assert any("/acme/tiny-bert/resolve/" in r and "datasets" not in r for r in hub.requests)


@pytest.mark.slow
def test_a_second_fetch_finds_the_files_in_the_cache(hub, tmp_path):
    code = ("import json\nfrom qarac_gui.core.data import hub as hub_data\n"
            "runs = [hub_data.fetch_dataset_files('acme/reviews', None, ['train', 'test']) for _ in range(2)]\n"
            "print(json.dumps([[r.done, r.total] for r in runs]))\n")
    result = run_with_hub(hub, tmp_path, [], code)
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = json.loads(result.stdout.strip().splitlines()[-1])
    size = len(CSV) + len(CSV[:300].rsplit(b"\n", 1)[0] + b"\n")
    assert first == [size, size] and second == [0, size]


@pytest.mark.slow
def test_a_token_used_for_a_private_model_is_in_no_file_the_app_writes(hub, tmp_path):
    from hub_server import TOKEN
    model = make_model_folder(tmp_path / "private-src", "bert")
    hub.add_folder("acme/secret-bert", model, private=True)
    project = hub_project(tmp_path / "private.toml", "acme/secret-bert",
                          "[train]\nmax_steps = 2\n[checkpoint]\nevery = 1\n")
    code = (f"import os, sys\nos.environ['HF_TOKEN'] = {TOKEN!r}\nfrom qarac_gui.cli import main\n"
            f"sys.exit(main([{str(project)!r}, '--out', {str(tmp_path / 'run')!r}, '--jsonl']))\n")
    result = run_with_hub(hub, tmp_path, [], code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any("/acme/secret-bert/resolve/" in r for r in hub.requests)      # the token opened the private repo
    written = [p for base in ("run", "data", "cache") for p in (tmp_path / base).rglob("*") if p.is_file()]
    assert len(written) > 20 and any(p.name == "events.jsonl" for p in written)
    leaked = [str(p) for p in written if TOKEN.encode() in p.read_bytes()]
    assert leaked == []
    assert TOKEN not in result.stdout and TOKEN not in result.stderr
