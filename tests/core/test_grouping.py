"""Batches grouped by length (train.group_by_length): far less padding, every row once an epoch, and an order that
depends on (seed, task, epoch, lengths) alone, so that a resumed run draws exactly what a straight one would."""

import json
import random
import threading

import pytest

from qarac_gui.core.events import RunStarted, StepLogged, describe
from qarac_gui.core.training.sampling import TaskStream, padding_report, padding_share


def _lognormal_lengths(n, seed=0):
    # Token counts of real text: most rows short, a long tail (median about 33, a few in the hundreds).
    rng = random.Random(seed)
    return [min(512, max(3, round(rng.lognormvariate(3.5, 0.7)))) for _ in range(n)]


# 8008 rows in batches of 32: 251 batches an epoch, enough for chunks of the full 50 batches
LENGTHS = {"reviews": _lognormal_lengths(8008, seed=1), "pairs": _lognormal_lengths(203, seed=2)}
SIZES = {n: len(v) for n, v in LENGTHS.items()}
BATCHES = {"reviews": 32, "pairs": 8}


def _stream(grouped=True, mixing="all_tasks", seed=5):
    return TaskStream(SIZES, BATCHES, mixing, {"reviews": 0.6, "pairs": 0.4}, seed, LENGTHS, grouped=grouped)


def _epoch_batches(stream, name):
    """One whole epoch of a task's batches, drawn through the stream as the loop draws them."""
    out = [stream.batch(name)]
    while stream.pos[name] < stream.sizes[name]:
        out.append(stream.batch(name))
    return out


def _padding_of(batches, lengths):
    """Padded share of the tokens, counted batch by batch from the rows' lengths: each row padded to its batch's
    longest, as collate pads."""
    room = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return (room - sum(lengths[i] for b in batches for i in b)) / room


def test_grouped_batches_carry_far_less_padding_than_random_ones():
    lengths = LENGTHS["reviews"]
    grouped = _epoch_batches(_stream(grouped=True), "reviews")
    random_ = _epoch_batches(_stream(grouped=False), "reviews")
    share_grouped, share_random = _padding_of(grouped, lengths), _padding_of(random_, lengths)
    assert share_random > 0.3                   # the mix is realistic: random batches waste a third or more
    assert share_grouped * 5 < share_random, (share_grouped, share_random)
    # padding_share counts the same thing from an order, which is what the run reports
    s = _stream(grouped=True)
    assert padding_share(s.epoch_order("reviews", 0), 32, [lengths]) == pytest.approx(share_grouped)
    assert padding_share(s.epoch_order("reviews", 0, grouped=False), 32, [lengths]) == pytest.approx(share_random)


def test_padding_share_adds_up_every_input_of_a_row():
    # two rows of one batch: input a is 2 and 4 long (2 padded of 8), input b 3 and 3 (0 of 6)
    assert padding_share([0, 1], 2, [[2, 4], [3, 3]]) == pytest.approx(2 / 14)
    assert padding_share([0, 1], 1, [[2, 4], [3, 3]]) == 0.0
    assert padding_share([], 4, [[]]) == 0.0


@pytest.mark.parametrize("grouped", [True, False])
def test_every_row_once_an_epoch_and_full_batches_but_the_last(grouped):
    s = _stream(grouped=grouped)
    for epoch in range(3):
        for name in SIZES:
            batches = _epoch_batches(s, name)
            assert sorted(i for b in batches for i in b) == list(range(SIZES[name]))
            sizes = [len(b) for b in batches]
            assert sizes[:-1] == [BATCHES[name]] * (len(batches) - 1)
            assert sizes[-1] == SIZES[name] - BATCHES[name] * (len(batches) - 1)
            assert s.epoch[name] == epoch and s.epochs_done(name) == epoch + 1
    # 8008 rows in batches of 32: 250 full ones and a last one of 8; 203 in batches of 8: 25 and a last of 3
    assert len(_epoch_batches(s, "reviews")) == 251 and len(_epoch_batches(s, "pairs")) == 26


def test_grouped_epochs_differ_but_stay_grouped():
    s = _stream()
    first, second = _epoch_batches(s, "reviews"), _epoch_batches(s, "reviews")
    assert {tuple(sorted(b)) for b in first} != {tuple(sorted(b)) for b in second}    # other neighbours each epoch
    # Still random across steps: long and short batches come in no order (sorted chunks would rise only between
    # chunks, 5 times an epoch; a random order rises about every other step).
    longest = [max(LENGTHS["reviews"][i] for i in b) for b in first]
    rises = sum(b > a for a, b in zip(longest, longest[1:]))
    assert len(first) / 4 < rises < 3 * len(first) / 4
    assert _padding_of(second, LENGTHS["reviews"]) * 5 < padding_share(
        s.epoch_order("reviews", 1, grouped=False), 32, [LENGTHS["reviews"]])


def test_without_grouping_the_order_is_the_one_runs_always_had():
    # Runs started before grouping existed resume on this order: it must not move.
    s = _stream(grouped=False)
    for epoch in range(2):
        order = list(range(SIZES["pairs"]))
        random.Random(f"5/pairs/{epoch}").shuffle(order)
        assert s.epoch_order("pairs", epoch) == order


@pytest.mark.parametrize("mixing", ["all_tasks", "temperature", "round_robin"])
def test_the_order_is_a_pure_function_and_a_restored_stream_continues_exactly(mixing):
    steps = 800                                 # about three epochs of the large task, many of the small one
    straight = _stream(mixing=mixing)
    expected = [straight.draw() for _ in range(steps)]
    twin = _stream(mixing=mixing)
    assert [twin.draw() for _ in range(steps)] == expected
    assert straight.epoch["reviews"] >= 1 and straight.epoch["pairs"] >= 3
    for cut in (1, 17, 300):                    # mid-epoch of both tasks, and into the next epochs
        first = _stream(mixing=mixing)
        got = [first.draw() for _ in range(cut)]
        state = json.loads(json.dumps(first.state_dict()))    # as the checkpoint stores it
        assert state["grouped"] is True
        resumed = _stream(mixing=mixing)
        resumed.load_state_dict(state)
        got += [resumed.draw() for _ in range(steps - cut)]
        assert got == expected, cut
    assert _stream(mixing=mixing, seed=6).draw() != expected[0]


def test_a_checkpoint_without_the_field_resumes_ungrouped_even_if_the_project_now_groups():
    plain = _stream(grouped=False)
    expected = [plain.draw() for _ in range(60)]
    first = _stream(grouped=False)
    got = [first.draw() for _ in range(20)]
    old_state = first.state_dict()
    del old_state["grouped"]                    # what checkpoints written before grouping existed hold
    resumed = _stream(grouped=True)             # the project says grouped now
    resumed.load_state_dict(json.loads(json.dumps(old_state)))
    assert resumed.grouped is False
    got += [resumed.draw() for _ in range(40)]
    assert got == expected


def test_a_grouped_checkpoint_resumes_grouped_even_if_the_project_no_longer_groups():
    straight = _stream(grouped=True)
    expected = [straight.draw() for _ in range(50)]
    first = _stream(grouped=True)
    got = [first.draw() for _ in range(10)]
    resumed = _stream(grouped=False)
    resumed.load_state_dict(first.state_dict())
    got += [resumed.draw() for _ in range(40)]
    assert resumed.grouped is True and got == expected


def test_grouping_needs_every_tasks_lengths():
    with pytest.raises(ValueError, match="row lengths of pairs"):
        TaskStream(SIZES, BATCHES, "all_tasks", {"reviews": 1, "pairs": 1}, 1, {"reviews": LENGTHS["reviews"]},
                   grouped=True)
    with pytest.raises(ValueError, match="3 row lengths for 203 rows"):
        TaskStream(SIZES, BATCHES, "all_tasks", {"reviews": 1, "pairs": 1}, 1,
                   {"reviews": LENGTHS["reviews"], "pairs": [1, 2, 3]})


def test_the_run_reports_padding_per_task_in_words():
    s = _stream(grouped=True)
    report = padding_report(s, {n: [v] for n, v in LENGTHS.items()})
    assert report["reviews"]["grouped_by_length"] is True
    shares = report["reviews"]["padding"]
    assert shares["grouped"] * 5 < shares["random"]
    event = RunStarted("/runs/x", 10, 0, {"sentiment": {"grouped_by_length": True,
                                                         "padding": {"grouped": 0.031, "random": 0.412}},
                                          "similarity": {"grouped_by_length": False,
                                                         "padding": {"grouped": 0.014, "random": 0.43}},
                                          "old": {"kind": "classification"}},
                       {}, "cpu", "fp32", {}, 0, 0)
    lines = describe(event).splitlines()
    assert lines[1:] == ["  sentiment: 3.1 % padding in batches (41 % if random)",
                         "  similarity: 43 % padding in batches (1.4 % with train.group_by_length)"]


def test_the_key_is_a_bool_of_the_project_file():
    from qarac_gui.core.project.config import Project, apply_override, parse_project
    from qarac_gui.core.project.convert import ConfigError
    assert Project().train.group_by_length is False
    raw = {"version": 2, "train": {"max_steps": 1}}
    apply_override(raw, "train.group_by_length=true")
    assert parse_project(raw, check=False).train.group_by_length is True
    apply_override(raw, "train.group_by_length=yes")
    with pytest.raises(ConfigError, match="train.group_by_length: expected true or false"):
        parse_project(raw, check=False)


# ---- a real run ------------------------------------------------------------------------------------------------

def _run(tmp_path, model, name, grouped, stop=None, resume=False, emit=None):
    from tiny import project_dict

    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.run import run
    raw = project_dict(model, tmp_path / "data", ["classification", "similarity"],
                       train={"max_steps": 9, "group_by_length": grouped}, optim={"lr": 1e-3})
    for task in raw["tasks"]:
        task["batch_size"] = 2          # 36 rows: chunks of 4 batches, so that sorting within them changes batches
    events = []
    sink = events.append if emit is None else (lambda e: (events.append(e), emit(e)))
    ended = run(parse_project(raw, tmp_path), sink, stop or threading.Event(), run_dir=tmp_path / name,
                resume=resume, min_log_interval=0.0)
    return events, ended


def _weights(folder):
    from safetensors.torch import load_file
    out = {}
    for f in sorted(folder.rglob("*.safetensors")):
        out.update({f"{f.relative_to(folder)}:{k}": v for k, v in load_file(f).items()})
    return out


def _stop_at(step, stop):
    return lambda e: stop.set() if isinstance(e, StepLogged) and e.step == step else None


def _same_weights(a, b):
    import torch
    a, b = _weights(a / "export" / "full"), _weights(b / "export" / "full")
    assert a and b, "a run exported no weights"
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.usefixtures("torch_threads")
def test_a_grouped_run_stopped_and_resumed_ends_with_the_weights_of_a_straight_one(tmp_path, tiny_bert):
    straight, ended = _run(tmp_path, tiny_bert, "straight", grouped=True)
    assert ended.reason == "completed"
    started = [e for e in straight if isinstance(e, RunStarted)][0]
    assert started.tasks["classification"]["grouped_by_length"] is True
    assert "padding in batches" in describe(started)

    stop = threading.Event()
    _, ended = _run(tmp_path, tiny_bert, "resumed", grouped=True, stop=stop, emit=_stop_at(4, stop))
    assert ended.reason == "stopped" and ended.step == 4
    second, ended = _run(tmp_path, tiny_bert, "resumed", grouped=True, resume=True)
    assert ended.reason == "completed" and [e for e in second if isinstance(e, RunStarted)][0].start_step == 4
    assert _same_weights(tmp_path / "straight", tmp_path / "resumed")


@pytest.mark.usefixtures("torch_threads")
def test_a_run_begun_ungrouped_resumes_ungrouped_when_the_project_now_groups(tmp_path, tiny_bert):
    assert _run(tmp_path, tiny_bert, "straight", grouped=False)[1].reason == "completed"
    stop = threading.Event()
    assert _run(tmp_path, tiny_bert, "resumed", grouped=False, stop=stop, emit=_stop_at(4, stop))[1].step == 4
    second, ended = _run(tmp_path, tiny_bert, "resumed", grouped=True, resume=True)
    assert ended.reason == "completed"
    assert [e for e in second if isinstance(e, RunStarted)][0].tasks["similarity"]["grouped_by_length"] is False
    assert any("continues with random" in getattr(e, "message", "") for e in second)
    assert _same_weights(tmp_path / "straight", tmp_path / "resumed")
    assert _run(tmp_path, tiny_bert, "grouped", grouped=True)[1].reason == "completed"
    assert not _same_weights(tmp_path / "straight", tmp_path / "grouped")     # grouping does change the batches
