"""Validation under several processes: each rank evaluates its own batches of every task, and the metrics gathered
from them are those of one process evaluating every row (gloo here, two ranks)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from tiny import project_dict

torch = pytest.importorskip("torch")

from qarac_gui.core.project.config import dumps_project, parse_project  # noqa: E402
from qarac_gui.core.training.distributed import SINGLE, World  # noqa: E402
from qarac_gui.core.training.evaluation import EVAL_MASK_SEED, _in_batch_order, batch_starts  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_threads")
KINDS = ["classification", "regression", "masked_lm", "token_classification", "span_qa"]
# 12 validation rows a task: batches of 5 go 2 to rank 0 (7 rows) and 1 to rank 1 (5 rows); one batch of 16 leaves
# rank 1 without rows
EVAL_BATCHES = (5, 16)


# ------------------------------------------------------------------------------------------------- no processes
@pytest.mark.parametrize("rows", [0, 1, 7, 12, 33])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_the_ranks_batches_are_one_process_batches_each_evaluated_once(rows, size):
    whole = batch_starts(rows, 5)
    shares = [batch_starts(rows, 5, World(r, size)) for r in range(size)]
    assert sorted(s for share in shares for s in share) == whole
    assert max(map(len, shares)) - min(map(len, shares)) <= 1        # no rank waits long for another
    if whole:
        merged = _in_batch_order([(share, [s + 100 for s in share]) for share in shares])
        assert merged == (whole, [s + 100 for s in whole])


# ------------------------------------------------------------------------------------------------- two processes
def _evaluate_on(rank: int, port: int, project_file: str, run_dir: str, out: dict) -> None:
    """Each rank builds the same model, evaluates every task alone (one process) and then on its share."""
    import torch.distributed as dist

    from qarac_gui.core.project.config import load_project
    from qarac_gui.core.training.evaluation import evaluate_task
    from qarac_gui.core.training.setup import build_run
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    trainee, _, _ = build_run(load_project(Path(project_file)), Path(run_dir), lambda e: None, threading.Event(),
                              resume=False)
    model = trainee.model.eval()
    seen: dict[str, list] = {}

    def counting(name, batch):          # the rows this rank's model evaluates
        rows = {v.shape[0] for k, v in batch.items() if k != "masked_positions"}
        seen.setdefault(name, []).append(rows.pop())
        return model(name, batch)
    got = {}
    for name, data in trainee.tasks.items():
        collate, starts = data.collate, []

        def recording(rows, seed, collate=collate, starts=starts):
            starts.append(seed - EVAL_MASK_SEED)
            return collate(rows, seed)
        data.collate = recording
        for size in EVAL_BATCHES:
            alone = evaluate_task(model, data, trainee.device, size, trainee.autocast, world=SINGLE)
            starts.clear()
            seen.clear()
            shared = evaluate_task(counting, data, trainee.device, size, trainee.autocast, world=World(rank, 2))
            got[f"{name}/{size}"] = {"alone": alone, "shared": shared, "starts": list(starts),
                                     "rows": sum(seen.get(name, [])), "of": len(data.valid)}
    out[rank] = got
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_evaluate_their_own_rows_and_agree_with_one_process(tmp_path, tiny_bert):
    import socket

    import torch.multiprocessing as mp
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS)
    path = tmp_path / "project.toml"
    path.write_text(dumps_project(parse_project(raw, tmp_path).with_absolute_paths()), encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.start_processes(_evaluate_on, args=(port, str(path), str(tmp_path / "run"), out), nprocs=2,
                       start_method="spawn")
    zero, one = out[0], out[1]
    assert sorted(zero) == sorted(f"{t.replace('_', '-')}/{s}" for t in KINDS for s in EVAL_BATCHES)
    for key in zero:
        # every metric (accuracy, F1, Spearman, perplexity, exact match...) is one process's, on both ranks alike
        assert zero[key]["shared"] == one[key]["shared"], key
        alone = zero[key]["alone"]
        assert zero[key]["shared"].keys() == alone.keys(), key
        for metric, value in alone.items():
            assert zero[key]["shared"][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), (key, metric)
        assert one[key]["alone"] == alone, key          # the two ranks' models are the same
        # each rank its own batches, every row once
        rows = zero[key]["of"]
        assert rows == 12
        assert sorted(zero[key]["starts"] + one[key]["starts"]) == list(range(0, rows, int(key.split("/")[1])))
        assert zero[key]["rows"] + one[key]["rows"] == rows
        assert (zero[key]["rows"], one[key]["rows"]) == ((7, 5) if key.endswith("/5") else (12, 0)), key
