"""Batches prepared by the background thread are the batches the loop would have collated itself."""

from __future__ import annotations

import threading

import pytest
from tiny import project_dict

torch = pytest.importorskip("torch")

from qarac_gui.core.project.config import parse_project  # noqa: E402
from qarac_gui.core.training import loop, prefetch  # noqa: E402
from qarac_gui.core.training.setup import build_run  # noqa: E402


def _train(tmp_path, tiny_bert, name, mixing="all_tasks"):
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "masked_lm"],
                       train={"max_steps": 9, "seed": 5, "mixing": mixing}, optim={"grad_accum": 2})
    stop = threading.Event()
    t, state, _ = build_run(parse_project(raw, tmp_path), tmp_path / name, lambda e: None, stop, resume=False)
    made = []
    real = prefetch.Prefetcher.__init__

    def keep(self, *args, **kwargs):
        real(self, *args, **kwargs)
        made.append(self)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prefetch.Prefetcher, "__init__", keep)
        assert loop.fit(t, state, lambda e: None, stop, min_log_interval=0) == "completed"
    return {k: v.clone() for k, v in t.model.state_dict().items()}, made[0]


@pytest.mark.parametrize("mixing", ["all_tasks", "proportional"])
def test_prefetched_steps_train_exactly_as_steps_collated_in_the_loop(tmp_path, tiny_bert, monkeypatch, mixing):
    ahead, used = _train(tmp_path, tiny_bert, "ahead", mixing)
    assert used.taken == 9              # every step took what the thread had prepared
    # The same run with a thread that prepares nothing: every step collated in the loop, as before.
    monkeypatch.setattr(prefetch.Prefetcher, "_work", lambda self, first, last: self._put(None))
    inline, unused = _train(tmp_path, tiny_bert, "inline", mixing)
    assert unused.taken == 0
    for key in ahead:
        assert torch.equal(ahead[key], inline[key]), key


def test_a_worker_that_fails_leaves_the_step_to_the_loop(tmp_path, tiny_bert, monkeypatch):
    calls = {"n": 0}
    real = prefetch.collate_step

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if threading.current_thread() is not threading.main_thread() and calls["n"] > 3:
            raise OSError("the disk went away")
        return real(*args, **kwargs)
    monkeypatch.setattr(prefetch, "collate_step", flaky)
    weights, used = _train(tmp_path, tiny_bert, "flaky")
    assert 0 < used.taken < 9
    monkeypatch.setattr(prefetch, "collate_step", real)
    clean, _ = _train(tmp_path, tiny_bert, "clean")
    for key in clean:
        assert torch.equal(weights[key], clean[key]), key
