"""Project-file versions: a version 1 or 2 file means in version 3 exactly what it meant, saving writes version 3,
and a file newer than the app is refused."""

import copy

import pytest
import tomli_w

from qarac_gui.core.paths import resource_path
from qarac_gui.core.project import config
from qarac_gui.core.project.config import CURRENT_VERSION, MIGRATIONS, load_project, migrate, save_project
from qarac_gui.core.project.convert import ConfigError

DEMO = resource_path("demo", "project.toml")

V1 = """version = 1
name = "old"

[backbones.encoder]
model = "bert-base-uncased"
freeze_layers = 2

[[tasks]]
name = "sentiment"
weight = 0.5

[tasks.head]
kind = "classification"
labels = ["neg", "pos"]

[tasks.data]
train = "s.csv"
validation_fraction = 0.2
limit = 100

[[tasks]]
name = "sim"

[tasks.head]
kind = "similarity"

[tasks.data]
train = "p.csv"
text = "a"
text_pair = "b"
label = "score"

[optim]
lr = 3e-5
weight_decay = 0.05
beta2 = 0.98
scheduler = "cosine"

[train]
max_steps = 10
mixing = "temperature"
"""


def test_this_app_writes_version_3():
    assert CURRENT_VERSION == 3 and sorted(MIGRATIONS) == [1, 2]


def test_a_version_1_file_loads_to_the_same_project_as_its_version_2_form(tmp_path):
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(V1, encoding="utf-8")
    new.write_text(V1.replace("version = 1", "version = 2"), encoding="utf-8")
    a, b = load_project(old), load_project(new)
    assert a == b and a.version == 3
    # the keys version 2 added keep the meaning version 1 had: no filter, no label map, AdamW
    assert all(t.data.filter == "" and t.data.label_map == {} for t in a.tasks) and a.optim.optimizer == "adamw"


def test_the_upgrade_changes_nothing_but_the_version():
    raw = {"version": 1, "name": "x", "optim": {"lr": 1.0}, "tasks": [{"name": "t", "data": {"limit": 3}}]}
    before = copy.deepcopy(raw)
    out = migrate(raw)
    assert out == {**before, "version": 3}
    assert raw == before                            # the caller's dict is left as it was


def test_saving_an_old_file_writes_version_3_with_the_same_meaning(tmp_path):
    old = tmp_path / "old.toml"
    old.write_text(V1, encoding="utf-8")
    project = load_project(old)
    save_project(project, tmp_path / "saved.toml")
    text = (tmp_path / "saved.toml").read_text(encoding="utf-8")
    assert text.startswith("version = 3\n")
    assert load_project(tmp_path / "saved.toml") == project


def test_the_bundled_demo_as_a_version_1_file_means_the_same(tmp_path):
    text = DEMO.read_text(encoding="utf-8")
    assert "\nversion = 2\n" in text
    old = tmp_path / "project.toml"
    old.write_text(text.replace("\nversion = 2\n", "\nversion = 1\n"), encoding="utf-8")
    a, b = load_project(old), load_project(DEMO)
    b.root = a.root = None                          # the folders differ; every key must not
    assert a == b


@pytest.mark.parametrize("version", [4, 99])
def test_a_newer_file_is_refused(tmp_path, version):
    path = tmp_path / "new.toml"
    path.write_text(V1.replace("version = 1", f"version = {version}"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert str(info.value) == (f"{path}: version: the file is version {version}, newer than this app understands "
                               "(3); update qarac_gui to open it")


def test_a_version_2_file_with_the_new_keys_round_trips(tmp_path):
    raw = config.tomllib.loads(V1.replace("version = 1", "version = 2"))
    raw["tasks"][1]["data"].update(filter="score != -1", label_map={"0": 1, "1": 0.5, "2": -1})
    raw["optim"]["optimizer"] = "nadam"
    path = tmp_path / "p.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    project = load_project(path)
    assert project.tasks[1].data.label_map == {"0": 1, "1": 0.5, "2": -1} and project.optim.optimizer == "nadam"
    save_project(project, path)
    assert load_project(path) == project


def test_the_optimizer_is_a_choice():
    raw = config.tomllib.loads(V1.replace("version = 1", "version = 2"))
    raw["optim"]["optimizer"] = "sgd"
    with pytest.raises(ConfigError) as info:
        config.parse_project(raw)
    assert str(info.value) == "optim.optimizer: 'sgd' is not one of adamw, nadam"


def test_a_version_2_file_means_what_it_meant_before_version_3_added_its_keys(tmp_path):
    path = tmp_path / "v2.toml"
    path.write_text(V1.replace("version = 1", "version = 2"), encoding="utf-8")
    project = load_project(path)
    assert project.version == 3
    # the keys version 3 added keep the meaning version 2 had: no minimum of steps, random batches, no tracker
    assert (project.train.min_steps, project.train.group_by_length, project.train.report_to) == (0, False, [])
