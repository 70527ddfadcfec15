"""What the step relies on in torch's private API still behaves as it did: if a torch release changes it, this
fails by name instead of training going quietly wrong."""

import torch

from qarac_gui.core.training.guard import rewind_scheduler
from qarac_gui.core.training.torch_internals import set_last_lr, skips_on_device, step_unless


def _fused():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    model(torch.randn(3, 4)).sum().backward()
    return model, opt


def test_the_fused_adamw_says_it_can_skip_on_the_device():
    _, opt = _fused()
    assert skips_on_device(opt)
    assert not skips_on_device(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))


def test_found_inf_leaves_weights_and_moments_untouched_and_zero_steps():
    model, opt = _fused()
    before = [p.detach().clone() for p in model.parameters()]
    step_unless(opt, torch.ones((), dtype=torch.float32))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for state in opt.state.values():
        assert torch.count_nonzero(state["exp_avg"]) == 0 and torch.count_nonzero(state["exp_avg_sq"]) == 0
    assert not hasattr(opt, "found_inf") and not hasattr(opt, "grad_scale")


def test_a_clear_flag_steps_as_plain_step_does():
    model_a, opt_a = _fused()
    model_b, opt_b = _fused()
    step_unless(opt_a, torch.zeros((), dtype=torch.float32))
    opt_b.step()
    assert all(torch.equal(a, b) for a, b in zip(model_a.parameters(), model_b.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(model_a.parameters(), _fused()[0].parameters()))


def test_the_scheduler_reports_the_lr_set_by_hand():
    _, opt = _fused()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    for _ in range(3):
        opt.step()
        sched.step()
    set_last_lr(sched, [0.123])
    assert sched.get_last_lr() == [0.123]
    rewind_scheduler(sched, opt, 1)             # the closed form at the position one step back
    assert sched.last_epoch == 2 and opt.param_groups[0]["lr"] == sched.get_last_lr()[0] == 0.1 / 3
