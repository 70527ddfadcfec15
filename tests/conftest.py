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


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    from tiny import make_model_folder
    return make_model_folder(tmp_path_factory.mktemp("models") / "bert", "bert")


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory):
    from tiny import make_model_folder
    return make_model_folder(tmp_path_factory.mktemp("models") / "roberta", "roberta")


@pytest.fixture(scope="session")
def torch_threads():
    import torch
    torch.set_num_threads(2)
