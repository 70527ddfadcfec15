import os
import sys
from pathlib import Path

# Before anything imports Qt or huggingface_hub: offscreen Qt, no Hub, app folders under a temp dir.
if not os.environ.get("QT_QPA_PLATFORM"):
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _app_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("QARAC_GUI_DATA", str(base / "app-data"))
    monkeypatch.setenv("QARAC_GUI_CACHE", str(base / "app-cache"))


def _bug_logs(folders: list[Path]) -> dict[Path, int]:
    # Only where a bug log can be: the app data of this session and, for a child given a data folder of its own,
    # inside this test's tmp_path (globbing every test's folder would cost more the longer the session runs).
    return {p: p.stat().st_size for folder, patterns in folders
            for pattern in patterns for p in folder.glob(pattern)}


@pytest.fixture(autouse=True)
def _no_unexpected_errors(request, tmp_path_factory, _app_dirs):
    """The "unexpected" message and the bug log are for bugs only: any bad input a test gives, in this process or
    a child, must get words of its own. A test that provokes a bug report on purpose is marked bug_report."""
    folders = [(tmp_path_factory.getbasetemp(), ("app-data/errors.log", "*/app-data/errors.log"))]
    if "tmp_path" in request.fixturenames:
        folders.append((request.getfixturevalue("tmp_path"), ("errors.log", "*/errors.log", "*/*/errors.log")))
    before = _bug_logs(folders)
    yield
    if request.node.get_closest_marker("bug_report"):
        return
    grown = {p: n for p, n in _bug_logs(folders).items() if n > before.get(p, 0)}
    if grown:
        path, size = next(iter(grown.items()))
        with open(path, encoding="utf-8", errors="replace") as f:
            f.seek(before.get(path, 0))
            report = f.read()
        pytest.fail(f"an error went to the bug log ({path}) instead of getting a message of its own:\n{report}",
                    pytrace=False)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    from tiny import make_model_folder
    return make_model_folder(tmp_path_factory.mktemp("models") / "bert", "bert")


@pytest.fixture(scope="session")
def quiet_bert(tmp_path_factory):
    """The tiny BERT without dropout: runs that should match (two ranks and one process, compiled and eager) then
    draw no different masks."""
    from tiny import make_model_folder, without_dropout
    return without_dropout(make_model_folder(tmp_path_factory.mktemp("models") / "quiet-bert", "bert"))


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory):
    from tiny import make_model_folder
    return make_model_folder(tmp_path_factory.mktemp("models") / "roberta", "roberta")


@pytest.fixture(scope="session")
def torch_threads():
    import torch
    torch.set_num_threads(2)


@pytest.fixture
def lora_run(tiny_bert, tmp_path):
    """A finished two-step run with one LoRA adapter, exported merged with its whole model."""
    import threading

    import tiny

    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.run import run
    raw = tiny.project_dict(tiny_bert, tmp_path / "data", ["classification"],
                            train={"max_steps": 2, "num_threads": 1}, export={"adapter": "merged"})
    raw["backbones"]["encoder"] |= {"adapter": "lora", "lora_rank": 4}
    run_dir = tmp_path / "runs" / "lora-run"
    ended = run(parse_project(raw, tmp_path), lambda e: None, threading.Event(), run_dir=run_dir, min_log_interval=0)
    assert ended.reason == "completed", ended.message
    return run_dir
