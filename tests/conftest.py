import os
import sys
from pathlib import Path

# Before anything imports Qt or huggingface_hub: offscreen Qt, no Hub, app folders under a temp dir.
if not os.environ.get("QT_QPA_PLATFORM"):
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny models gain nothing from a second torch thread, and on a CPU shared with other work two threads that wait
# on each other made 60 steps take 1 to 9 s instead of 0.2 s. Children (CLI runs, torchrun ranks) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_collection_finish(session):
    # What collection imported (torch, transformers, Qt...) lives as long as the session: out of the collector's way,
    # each full collection (the automatic ones, and the explicit ones of the data loader) costs a fraction.
    import gc
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _app_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("QARAC_GUI_DATA", str(base / "app-data"))
    monkeypatch.setenv("QARAC_GUI_CACHE", str(base / "app-cache"))


class _AppDataFolders:
    """The app data folders one level under the session's temp dir: a test's own or a fixture's. That dir gains a
    folder per test, so looking into every one of them twice per test cost seconds a run; a folder is looked into
    until the end of the test in which it appeared, and once it holds app data its bug log is read every time."""

    def __init__(self, base: Path):
        self.base, self.found, self.settled, self.fresh = base, [], set(), set()

    def logs(self) -> list[Path]:
        for name in os.listdir(self.base):
            if name in self.settled:
                continue
            if os.path.isdir(self.base / name / "app-data"):
                self.found.append(self.base / name / "app-data" / "errors.log")
                self.settled.add(name)
            else:
                self.fresh.add(name)
        return self.found

    def settle(self) -> None:
        self.settled |= self.fresh
        self.fresh.clear()


@pytest.fixture(scope="session")
def _app_data_folders(tmp_path_factory):
    return _AppDataFolders(tmp_path_factory.getbasetemp())


def _bug_logs(folders: _AppDataFolders, tmp_path: Path | None) -> dict[Path, int]:
    # Only where a bug log can be: the app data of this session and of the folders under it and, for a child given
    # a data folder of its own, inside this test's tmp_path.
    paths = [folders.base / "app-data" / "errors.log", *folders.logs()]
    if tmp_path is not None:
        paths += [p for pattern in ("errors.log", "*/errors.log", "*/*/errors.log") for p in tmp_path.glob(pattern)]
    sizes = {}
    for p in paths:
        try:
            sizes[p] = os.stat(p).st_size
        except FileNotFoundError:
            pass
    return sizes


@pytest.fixture(autouse=True)
def _no_unexpected_errors(request, _app_data_folders, _app_dirs):
    """The "unexpected" message and the bug log are for bugs only: any bad input a test gives, in this process or
    a child, must get words of its own. A test that provokes a bug report on purpose is marked bug_report."""
    tmp_path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    before = _bug_logs(_app_data_folders, tmp_path)
    yield
    grown = {p: n for p, n in _bug_logs(_app_data_folders, tmp_path).items() if n > before.get(p, 0)}
    _app_data_folders.settle()
    if grown and not request.node.get_closest_marker("bug_report"):
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
    torch.set_num_threads(1)


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
