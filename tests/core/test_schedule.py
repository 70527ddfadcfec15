import math
import re

import pytest

from qarac_gui.core.project.config import OptimConfig, parse_project
from qarac_gui.core.training.plan import (
    lr_curve,
    lr_factor,
    plan_run,
    plan_warnings,
    task_probabilities,
    warmup_steps,
)

HF_NAMES = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
            "inverse_sqrt"]


@pytest.mark.parametrize("name", HF_NAMES)
@pytest.mark.parametrize("warmup", [0, 7])
def test_lr_factor_matches_transformers_get_scheduler(name, warmup):
    import torch
    from transformers import get_scheduler
    total, lr = 50, 2e-5
    optim = OptimConfig(lr=lr, scheduler=name, warmup_steps=warmup, num_cycles=2.0 if "restarts" in name else 0,
                        power=2.0, lr_end_ratio=0.1)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    kwargs = {}
    if name == "cosine_with_restarts":
        kwargs = {"num_cycles": 2}
    if name == "polynomial":
        kwargs = {"power": 2.0, "lr_end": lr * 0.1}
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total,
                          scheduler_specific_kwargs=kwargs)
    for done in range(total + 3):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr * lr_factor(optim, done, total), rel=1e-9, abs=1e-15)
        opt.step()
        sched.step()


def test_exponential_decays_by_gamma_after_warmup():
    optim = OptimConfig(scheduler="exponential", warmup_steps=4, gamma=0.9)
    assert [lr_factor(optim, d, 100) for d in range(4)] == [0, 0.25, 0.5, 0.75]
    assert lr_factor(optim, 4, 100) == 1.0
    assert lr_factor(optim, 6, 100) == pytest.approx(0.81)


def test_warmup_ratio_rounds_up_and_steps_win():
    assert warmup_steps(OptimConfig(warmup_ratio=0.1), 55) == 6
    assert warmup_steps(OptimConfig(warmup_ratio=0.1, warmup_steps=3), 55) == 3


def _project(**sections):
    raw = {"version": 1, "backbones": {"encoder": {"model": "m"}},
           "tasks": [{"name": "a", "batch_size": 10, "data": {"train": "a.csv"}},
                     {"name": "b", "batch_size": 4, "data": {"train": "b.csv"}}],
           "train": {"max_steps": 20}}
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return parse_project(raw)


def test_curve_holds_encoder_at_zero_during_head_only_phase():
    p = _project(optim={"lr": 1e-5, "head_lr": 1e-3, "head_warmup_steps": 5, "scheduler": "constant"})
    curve = lr_curve(p, 20)
    assert curve["encoder"][:5] == [0.0] * 5 and curve["encoder"][5:] == [1e-5] * 15
    assert curve["heads"] == [1e-3] * 20


def test_plan_in_epochs_of_a_task_for_all_tasks_and_drawing_strategies():
    sizes = {"a": 100, "b": 20}
    p = _project(train={"max_steps": 0, "epochs": 2, "epoch_task": "b"})
    plan = plan_run(p, sizes)
    assert plan.batches_per_epoch == {"a": 10, "b": 5}
    assert plan.total_steps == 10 and plan.draws_per_step == 2
    # round_robin picks b every other draw: two epochs of b's 5 batches take 20 steps.
    assert plan_run(_project(train={"max_steps": 0, "epochs": 2, "epoch_task": "b", "mixing": "round_robin"}),
                    sizes).total_steps == 20
    # proportional: b is drawn 20/120 of the time.
    proportional = _project(train={"max_steps": 0, "epochs": 1, "epoch_task": "b", "mixing": "proportional"})
    assert plan_run(proportional, sizes).total_steps == math.ceil(5 / (20 / 120))
    # gradient accumulation: each step consumes 2 batches of every task.
    accum = _project(train={"max_steps": 0, "epochs": 2, "epoch_task": "a"}, optim={"grad_accum": 2})
    assert plan_run(accum, sizes).total_steps == 10
    # the default epoch task is the largest one
    assert plan_run(_project(train={"max_steps": 0, "epochs": 1}), sizes).epoch_task == "a"


def test_temperature_flattens_proportional_weights():
    sizes = {"a": 900, "b": 100}
    prop = task_probabilities(_project(train={"mixing": "proportional"}), sizes)
    temp = task_probabilities(_project(train={"mixing": "temperature", "temperature": 2.0}), sizes)
    assert prop["a"] == pytest.approx(0.9)
    assert temp["a"] == pytest.approx(30 / 40)          # sqrt(900) / (sqrt(900) + sqrt(100))
    assert task_probabilities(_project(train={"mixing": "uniform"}), sizes) == {"a": 0.5, "b": 0.5}


def test_min_steps_is_a_floor_under_epochs_that_large_data_does_not_reach():
    small = _project(train={"max_steps": 0, "epochs": 1, "min_steps": 200})
    assert plan_run(small, {"a": 60, "b": 60}).total_steps == 200       # 60 rows / 10 per batch: 6 steps
    assert plan_run(small, {"a": 10_000, "b": 60}).total_steps == 1000   # the epoch is longer than the floor
    fixed = _project(train={"max_steps": 30, "epochs": 1, "min_steps": 200})
    assert plan_run(fixed, {"a": 60, "b": 60}).total_steps == 30          # max_steps is the user's exact choice


def test_a_plan_too_short_to_learn_is_warned_about_with_a_setting_that_fixes_it():
    sizes = {"a": 60, "b": 60}
    short = _project(train={"max_steps": 0, "epochs": 1})
    plan = plan_run(short, sizes)
    [warning] = plan_warnings(short, plan)
    assert warning.startswith("train.epochs: 1 epoch(s) of a are 6 optimiser steps, too few")
    suggested = float(re.search(r"raise train\.epochs to (\d+)", warning).group(1))
    short.train.epochs = suggested
    assert plan_warnings(short, plan_run(short, sizes)) == [] and plan_run(short, sizes).total_steps >= 200
    steps = _project(train={"max_steps": 12, "epochs": 0})
    [warning] = plan_warnings(steps, plan_run(steps, sizes))
    assert warning.startswith("train.max_steps: 12 optimiser steps are too few")
    floor = _project(train={"max_steps": 0, "epochs": 1, "min_steps": 100})
    assert plan_warnings(floor, plan_run(floor, sizes)) == []


@pytest.mark.parametrize("mixing", ["all_tasks", "round_robin", "proportional", "temperature", "uniform"])
def test_the_mixing_preview_is_what_the_sampler_draws(mixing):
    from qarac_gui.core.training.plan import mixing_preview
    from qarac_gui.core.training.sampling import TaskStream
    sizes = {"a": 300, "b": 40}
    p = _project(train={"max_steps": 0, "epochs": 3, "mixing": mixing, "epoch_task": "a"})
    plan = plan_run(p, sizes)
    preview = mixing_preview(p, sizes, plan)
    stream = TaskStream(sizes, {t.name: t.batch_size for t in p.tasks}, mixing, task_probabilities(p, sizes), seed=5)
    drawn = {"a": 0, "b": 0}
    rows = {"a": 0, "b": 0}
    for _ in range(plan.total_steps * p.optim.grad_accum):
        for name, batch in stream.draw():
            drawn[name] += 1
            rows[name] += len(batch)
    assert sum(s.share for s in preview.values()) == pytest.approx(1.0)
    for name in sizes:
        expected = preview[name]
        if mixing in ("all_tasks", "round_robin"):       # no chance involved: exact
            assert drawn[name] == expected.batches, name
        else:                                             # within 4 binomial standard deviations
            n, q = plan.total_steps, expected.batches / plan.total_steps
            assert abs(drawn[name] - expected.batches) <= 4 * math.sqrt(n * q * (1 - q)) + 1, name
        # the rows those batches held: passes over the data, up to the one short batch at the end of an epoch
        per_epoch = plan.batches_per_epoch[name]
        passes = expected.passes if mixing in ("all_tasks", "round_robin") else drawn[name] / per_epoch
        assert rows[name] / sizes[name] == pytest.approx(passes, abs=1 / per_epoch), name
