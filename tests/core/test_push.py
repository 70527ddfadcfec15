"""Pushing a run's exported models through huggingface_hub's real create_repo and upload_folder, against the
stand-in Hub: repos, bytes, privacy, the model card, the token kept out of every file, and each failure in words."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest
from hub_server import TOKEN, StandInHub

from qarac_gui.cli import main
from qarac_gui.core.errors import UserError
from qarac_gui.core.model.hub import HubDown, HubError
from qarac_gui.core.results.push import PushCancelled, model_card, plan_push, push_run


def write_run(root: Path, model: str = "acme/tiny-bert") -> Path:
    """A finished run's folder as the export leaves it (project, metrics, export/<task>, export/full), with random
    bytes for weights: pushing reads files, it never loads them."""
    from tiny import project_dict

    from qarac_gui.core.project.config import dumps_project, parse_project
    raw = project_dict(Path(model), root / "data", ["classification", "regression"])
    raw["backbones"]["encoder"]["model"] = model
    raw["tasks"][1]["data"] = {"hub": "acme/scores", "text": "text", "label": "score", "validation_fraction": 0.25}
    run = root / "run"
    rng = random.Random(3)

    def write(path: Path, data: bytes | str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    project = dumps_project(parse_project(raw, root, check=False))
    write(run / "project.toml", project)
    write(run / "metrics.json", json.dumps({"step": 6, "best_step": 6, "best_value": 0.75, "final": {
        "classification": {"accuracy": 0.75, "loss": 0.5}, "regression": {"mse": 0.125, "pearson": 0.5}}}))
    for task in ("classification", "regression"):
        write(run / "export" / task / "config.json", json.dumps({"model_type": "bert", "task": task}))
        write(run / "export" / task / "model.safetensors", rng.randbytes(40_000))
        write(run / "export" / task / "tokenizer.json", '{"version": "1.0"}')
        write(run / "export" / task / "README.md", f"---\nlibrary_name: transformers\n---\n# the export's {task}\n")
        write(run / "export" / task / "project.toml", project)
    write(run / "export" / "full" / "backbones" / "encoder" / "config.json", '{"model_type": "bert"}')
    write(run / "export" / "full" / "backbones" / "encoder" / "model.safetensors", rng.randbytes(30_000))
    write(run / "export" / "full" / "heads.safetensors", rng.randbytes(5_000))
    write(run / "export" / "full" / "manifest.json", '{"format": "qarac_gui.multitask/1"}')
    return run


def logged_in(tmp_path: Path, monkeypatch, token: str | None = TOKEN) -> Path:
    """huggingface_hub's own token store, moved into tmp, holding `token` (None: nobody logged in)."""
    from huggingface_hub import constants
    store = tmp_path / "hf-home"
    store.mkdir(exist_ok=True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(store / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(store / "stored_tokens"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if token is not None:
        (store / "token").write_text(token)
    return store


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server = StandInHub().start()
    # what HF_ENDPOINT sets, for the CLI and the window: the API's address and the files'
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.url + "/{repo_id}/resolve/{revision}/{filename}")
    yield server
    server.stop()


@pytest.fixture
def run(tmp_path):
    return write_run(tmp_path / "a-run")


@pytest.fixture
def login(tmp_path, monkeypatch):
    return logged_in(tmp_path, monkeypatch)


def exported(run: Path, name: str) -> dict[str, bytes]:
    folder = run / "export" / name
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def card_data(text: str):
    from huggingface_hub import ModelCard
    return ModelCard(text).data


def test_one_private_repo_per_task_with_every_file_byte_identical_and_a_card(hub, login, run):
    seen = []
    urls = push_run(run, "tester/tiny", progress=seen.append)
    names = ["classification", "full", "regression"]
    assert urls == [f"{hub.url}/tester/tiny-{n}" for n in names]
    for n in names:
        repo = hub.repos[f"tester/tiny-{n}"]
        assert repo.private
        files = exported(run, n)
        files.pop("README.md", None)            # the card written for the repo takes the export's place
        assert {k: v for k, v in repo.files.items() if k != "README.md"} == files
    card = hub.repos["tester/tiny-classification"].files["README.md"].decode()
    data = card_data(card)
    assert (data.library_name, data.pipeline_tag, data.base_model) == ("transformers", "text-classification",
                                                                         "acme/tiny-bert")
    assert data.datasets is None                 # the classification data is a local file: named in the text only
    assert {"qarac-gui", "multi-task", "classification"} <= set(data.tags)
    assert "- `classification`: accuracy 0.7500, loss 0.5000" in card and "`classification.csv`" in card
    assert "the Hub model `acme/tiny-bert`" in card
    assert "```toml\n" + (run / "project.toml").read_text().rstrip("\n") + "\n```" in card
    regression = card_data(hub.repos["tester/tiny-regression"].files["README.md"].decode())
    assert regression.datasets == ["acme/scores"] and regression.pipeline_tag == "text-classification"
    full = card_data(hub.repos["tester/tiny-full"].files["README.md"].decode())
    assert full.library_name is None and full.pipeline_tag is None and full.datasets == ["acme/scores"]
    # progress: files and bytes only grow, and end at what the plan said
    plan = plan_push(run, "tester/tiny")
    assert [(p.files_done, p.bytes_done) for p in seen] == sorted((p.files_done, p.bytes_done) for p in seen)
    assert (seen[-1].files_done, seen[-1].bytes_done) == (plan.files, plan.size) == (seen[-1].files_total,
                                                                                      seen[-1].bytes_total)
    assert plan.files == sum(len(exported(run, n)) for n in names) - 2 + 3   # two export cards replaced, three new


def test_one_public_repo_with_a_folder_per_task(hub, login, run):
    urls = push_run(run, "tester/all", ["classification", "regression"], layout="one_repo", private=False)
    assert urls == [f"{hub.url}/tester/all"] and list(hub.repos) == ["tester/all"]
    repo = hub.repos["tester/all"]
    assert not repo.private
    expected = {f"{n}/{k}": v for n in ("classification", "regression") for k, v in exported(run, n).items()}
    assert {k: v for k, v in repo.files.items() if k != "README.md"} == expected
    card = repo.files["README.md"].decode()
    data = card_data(card)
    assert data.pipeline_tag is None            # nothing at the root for the Hub's widget to load
    assert data.datasets == ["acme/scores"] and data.base_model == "acme/tiny-bert"
    assert "| `classification/` | `classification` | classification |" in card
    assert "- `regression`: mse 0.1250, pearson 0.5000" in card


# huggingface_hub's LFS upload hands httpx2 a file as `data=`, which httpx2 deprecates; its own business.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_weights_through_git_lfs_when_the_client_has_no_xet(hub, login, run, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    hub.lfs = True
    push_run(run, "tester/lfs", ["classification"])
    assert any(r.startswith("PUT /lfs-upload/") for r in hub.requests)
    weights = (run / "export" / "classification" / "model.safetensors").read_bytes()
    assert hub.repos["tester/lfs-classification"].files["model.safetensors"] == weights


def test_a_second_push_sends_nothing_unchanged(hub, login, run):
    push_run(run, "tester/again", ["classification"])
    commits = len(hub.commits)
    push_run(run, "tester/again", ["classification"])
    assert all("model.safetensors" not in c["paths"] for c in hub.commits[commits:])


def test_the_token_is_in_no_written_file(hub, login, run, tmp_path, capsys):
    push_run(run, "tester/secret", layout="one_repo")
    assert main([str(run), "--push", "tester/secret2"]) == 0
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    from qarac_gui.core import paths
    written = [p for folder in (tmp_path, paths.data_dir()) for p in folder.rglob("*")
               if p.is_file() and login not in p.parents]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]
    uploaded = [d for r in hub.repos.values() for d in r.files.values()]
    assert uploaded and not [d for d in uploaded if TOKEN.encode() in d]


def test_cancel_stops_between_folders(hub, login, run):
    cancel = threading.Event()

    def cancel_after_the_first(p):
        if p.files_done:
            cancel.set()
    with pytest.raises(PushCancelled, match="1 of 3 folder.s. pushed; push again to finish"):
        push_run(run, "tester/stop", progress=cancel_after_the_first, cancel=cancel)
    assert hub.repos["tester/stop-classification"].files
    assert not hub.repos["tester/stop-full"].files and not hub.repos["tester/stop-regression"].files


def test_not_logged_in_says_how_before_asking_the_hub(hub, run, tmp_path, monkeypatch, capsys):
    logged_in(tmp_path, monkeypatch, token=None)
    with pytest.raises(HubError, match="not logged in to the Hugging Face Hub: run `hf auth login`"):
        push_run(run, "tester/x")
    assert not hub.requests
    assert main([str(run), "--push", "tester/x"]) == 1
    err = capsys.readouterr().err
    assert "hf auth login" in err and "Traceback" not in err


@pytest.mark.parametrize("case,message", [
    ("401", r"did not accept the saved login \(401\): log in again with `hf auth login`"),
    ("403", r"pushing to acme/x-classification: this account has no write access to acme \(403\)"),
    ("409", r"the Hub reported a conflict \(409\)"),
    ("down", r"cannot reach the Hub \(.*\); check the network and push again \(nothing was pushed\)"),
    ("offline", r"offline \(HF_HUB_OFFLINE is set\): cannot push"),
])
def test_each_failure_has_its_message_in_the_api_and_the_cli(hub, login, run, case, message, monkeypatch, capsys):
    from huggingface_hub import constants
    repo = "acme/x" if case == "403" else "tester/x"
    if case == "401":
        (login / "token").write_text("hf_expired")
    if case == "409":
        hub.status, hub.fault_on = 409, "/commit/"
    if case == "down":
        hub.stop()
    if case == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubDown if case == "down" else HubError, match=message):
        push_run(run, repo)
    assert main([str(run), "--push", repo]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    import re
    assert re.search(message, err.splitlines()[-1])


@pytest.mark.parametrize("repo,message", [
    ("tiny", "not a Hub repository name: give ORG/NAME"),
    ("tester/a/b", "not a Hub repository name"),
    ("tester/bad--name", "not a valid Hub repository name"),
])
def test_bad_repo_names_are_refused_before_anything_is_sent(hub, login, run, repo, message):
    with pytest.raises(UserError, match=message):
        push_run(run, repo)
    assert not hub.requests


def test_cli_pushes_one_repo_and_prints_progress_and_the_url(hub, login, run, capsys):
    assert main([str(run), "--push", "tester/cli", "--one-repo", "--public"]) == 0
    out = capsys.readouterr()
    assert out.out.split() == [f"{hub.url}/tester/cli"]
    assert "Uploading classification:" in out.err and " files, " in out.err
    assert not hub.repos["tester/cli"].private


def test_cli_push_needs_a_run_folder(tmp_path, capsys):
    assert main(["--public"]) == 1
    assert "--one-repo and --public go with --push ORG/NAME" in capsys.readouterr().err
    assert main(["--push", "tester/x"]) == 1
    assert "give the run folder to push" in capsys.readouterr().err
    project = tmp_path / "p.toml"
    project.write_text("")
    assert main([str(project), "--push", "tester/x"]) == 1
    assert "not a run folder" in capsys.readouterr().err
    assert main([str(tmp_path), "--push", "tester/x"]) == 1
    assert "no exported models" in capsys.readouterr().err


def test_card_fences_a_project_that_holds_backticks(run):
    from qarac_gui.core.project.config import load_project
    text = 'name = "has ``` inside"\n'
    card = model_card(load_project(run / "project.toml", check=False), text, {}, ["classification"], False)
    assert "````toml\n" + text + "````" in card and "no validation data" in card


@pytest.mark.slow
def test_a_trained_run_pushed_downloads_and_loads_with_plain_transformers(hub, login, tmp_path, tiny_bert):
    from huggingface_hub import snapshot_download
    from tiny import project_dict
    from transformers import AutoModelForSequenceClassification

    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.run import run as train
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"], train={"max_steps": 2})
    ended = train(parse_project(raw, tmp_path), lambda e: None, threading.Event(), run_dir=tmp_path / "run")
    assert ended.reason == "completed"
    push_run(tmp_path / "run", "tester/trained", ["classification"])
    folder = snapshot_download("tester/trained-classification", cache_dir=str(tmp_path / "hf-cache"))
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.num_labels == 2
    assert "Fine-tuned with qarac_gui" in Path(folder, "README.md").read_text()
