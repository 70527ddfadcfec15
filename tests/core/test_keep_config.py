"""Keep tasks in the project file: what validation refuses, and that the plan and the mixing preview leave them out."""

from __future__ import annotations

import pytest

from qarac_gui.core.project.config import parse_project
from qarac_gui.core.project.convert import ConfigError
from qarac_gui.core.training.plan import mixing_preview, plan_run, task_probabilities


def _raw(**changes) -> dict:
    raw = {"version": 3, "name": "t", "backbones": {"encoder": {"model": "bert-base-uncased"}},
           "tasks": [{"name": "sentiment", "head": {"kind": "classification"}, "data": {"train": "s.csv"}},
                     {"name": "general", "head": {"kind": "masked_lm"}, "data": {"train": "g.csv"}, "keep": True}],
           "train": {"max_steps": 10}}
    for section, values in changes.items():
        raw.setdefault(section, {}).update(values)
    return raw


def _problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_project(raw)
    return str(info.value).splitlines()


def test_a_keep_task_with_the_defaults_is_valid():
    p = parse_project(_raw())
    assert p.task("general").keep and not p.task("sentiment").keep
    assert (p.eval.forgetting_alert, p.eval.forgetting_pause) == (0.1, False)


def test_every_task_keep_leaves_nothing_to_train():
    raw = _raw()
    raw["tasks"][0]["keep"] = True
    assert ("tasks: every task has keep = true (evaluated only, never trained), so nothing would train; set "
            "keep = false on at least one task") in _problems(raw)


@pytest.mark.parametrize("section, values, expected", [
    ("train", {"epoch_task": "general"}, "train.epoch_task: task 'general' has keep = true and is never trained"),
    ("eval", {"metric": "general/perplexity"}, "eval.metric: task 'general' has keep = true"),
    ("export", {"tasks": ["sentiment", "general"]}, "export.tasks: task 'general' has keep = true"),
    ("eval", {"forgetting_alert": -0.1}, "eval.forgetting_alert: must be 0 (off) or a relative change above 0"),
])
def test_what_a_keep_task_cannot_be(section, values, expected):
    assert any(line.startswith(expected) for line in _problems(_raw(**{section: values})))


def test_the_plan_and_the_mixing_preview_leave_keep_tasks_out():
    p = parse_project(_raw(train={"max_steps": 0, "epochs": 1.0, "mixing": "proportional"}))
    sizes = {"sentiment": 160, "general": 10_000}
    plan = plan_run(p, sizes)
    # the largest task would be the epoch task, but it is never trained
    assert plan.epoch_task == "sentiment" and set(plan.batches_per_epoch) == {"sentiment"}
    assert plan.total_steps == 10
    assert task_probabilities(p, sizes) == {"sentiment": 1.0}
    assert set(mixing_preview(p, sizes, plan)) == {"sentiment"}
