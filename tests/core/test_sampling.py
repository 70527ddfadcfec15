from collections import Counter

import pytest

from qarac_gui.core.training.sampling import TaskStream

SIZES = {"big": 10, "small": 3}
BATCHES = {"big": 4, "small": 2}


def _stream(mixing, probs=None, seed=1):
    return TaskStream(SIZES, BATCHES, mixing, probs or {"big": 0.5, "small": 0.5}, seed)


def test_all_tasks_gives_every_task_each_draw_and_small_tasks_cycle():
    s = _stream("all_tasks")
    seen = {"big": [], "small": []}
    for _ in range(6):
        draw = s.draw()
        assert [name for name, _ in draw] == ["big", "small"]
        for name, rows in draw:
            seen[name].append(rows)
    # big: batches of 4, 4, 2 per epoch; small: 2, 1 per epoch, then the next epoch starts
    assert [len(b) for b in seen["big"]] == [4, 4, 2, 4, 4, 2]
    assert [len(b) for b in seen["small"]] == [2, 1, 2, 1, 2, 1]
    for name, size in SIZES.items():
        epoch_rows = [i for b in seen[name][: (3 if name == "big" else 2)] for i in b]
        assert sorted(epoch_rows) == list(range(size))          # an epoch covers every row exactly once
    assert s.epoch == {"big": 1, "small": 2}


def test_epochs_are_reshuffled():
    s = TaskStream({"t": 50}, {"t": 50}, "all_tasks", {"t": 1.0}, seed=3)
    first, second = s.draw()[0][1], s.draw()[0][1]
    assert sorted(first) == sorted(second) and first != second


def test_round_robin_alternates():
    s = _stream("round_robin")
    assert [s.draw()[0][0] for _ in range(5)] == ["big", "small", "big", "small", "big"]


def test_proportional_draw_frequencies_follow_the_weights():
    s = _stream("proportional", {"big": 0.8, "small": 0.2})
    counts = Counter(s.draw()[0][0] for _ in range(4000))
    assert counts["big"] / 4000 == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize("mixing", ["all_tasks", "proportional", "temperature", "uniform", "round_robin"])
def test_state_round_trip_continues_the_same_sequence(mixing):
    import json
    straight = _stream(mixing, {"big": 0.7, "small": 0.3})
    expected = [straight.draw() for _ in range(20)]
    first = _stream(mixing, {"big": 0.7, "small": 0.3})
    got = [first.draw() for _ in range(7)]
    state = json.loads(json.dumps(first.state_dict()))       # it must survive the checkpoint's JSON
    resumed = _stream(mixing, {"big": 0.7, "small": 0.3})
    resumed.load_state_dict(state)
    got += [resumed.draw() for _ in range(13)]
    assert got == expected


def test_resume_refuses_changed_data():
    s = _stream("all_tasks")
    state = s.state_dict()
    other = TaskStream({"big": 11, "small": 3}, BATCHES, "all_tasks", {"big": 0.5, "small": 0.5}, 1)
    with pytest.raises(ValueError, match="training data changed"):
        other.load_state_dict(state)
