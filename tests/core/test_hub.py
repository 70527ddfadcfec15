"""Hub search, details and download through the real huggingface_hub calls, against a stand-in server."""

import threading

import pytest
from hub_server import TOKEN, Repo, StandInHub
from tiny import make_model_folder

from qarac_gui.core.model import hub as qhub


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    folder = make_model_folder(tmp_path_factory.mktemp("hubmodels") / "mlm", "bert", head="mlm")
    (folder / "pytorch_model.bin").write_bytes(b"pickle weights the app must not fetch")
    return folder


@pytest.fixture
def hub(monkeypatch, tiny_mlm):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server = StandInHub().start()
    server.add_folder("acme/tiny-bert", tiny_mlm, downloads=500, likes=3, parameters=31_000)
    for i, (downloads, likes, date) in enumerate([(900, 1, "2025-05-01"), (100, 50, "2026-06-01"),
                                                  (300, 7, "2024-01-01"), (50, 2, "2026-09-09")]):
        server.add(Repo(f"acme/encoder-{i}", {"config.json": b'{"model_type": "bert"}'}, downloads=downloads,
                        likes=likes, last_modified=f"{date}T00:00:00.000Z"))
    server.add(Repo("acme/gpt", {"config.json": b"{}"}, pipeline_tag="text-generation", downloads=10_000))
    server.add(Repo("other/french", {"config.json": b"{}"}, tags=["transformers", "fr"], downloads=20))
    server.add_folder("acme/gated-bert", tiny_mlm, gated=True)
    server.add_folder("acme/private-bert", tiny_mlm, private=True)
    server.add(Repo("acme/busy", {"config.json": b"{}"}, error=429))
    yield server
    server.stop()


def test_search_finds_encoders_sorted_and_paged(hub):
    search = qhub.ModelSearch(endpoint=hub.url, page_size=4)
    first = search.next_page()
    assert [h.id for h in first] == ["acme/encoder-0", "acme/tiny-bert", "acme/encoder-2", "acme/encoder-1"]
    second = search.next_page()
    # the gpt model is not fill-mask, the private one is not listed
    assert [h.id for h in second] == ["acme/encoder-3", "other/french", "acme/gated-bert"] and search.exhausted
    assert second[2].gated
    tiny = first[1]
    assert (tiny.downloads, tiny.likes, tiny.parameters, tiny.license) == (500, 3, 31_000, "apache-2.0")
    assert tiny.last_modified == "2026-01-01"
    by_likes = qhub.ModelSearch("encoder", sort="likes", endpoint=hub.url).next_page()
    assert [h.id for h in by_likes] == ["acme/encoder-1", "acme/encoder-2", "acme/encoder-3", "acme/encoder-0"]
    recent = qhub.ModelSearch("encoder", sort="updated", endpoint=hub.url).next_page()
    assert recent[0].id == "acme/encoder-3"
    anything = qhub.ModelSearch("gpt", pipeline_tag=None, endpoint=hub.url).next_page()
    assert [h.id for h in anything] == ["acme/gpt"]
    french = qhub.ModelSearch(pipeline_tag=None, language="fr", endpoint=hub.url).next_page()
    assert [h.id for h in french] == ["other/french"]


def test_details_before_download(hub, tiny_mlm):
    details = qhub.model_details("acme/tiny-bert", endpoint=hub.url)
    assert details.architecture == "BertForMaskedLM" and details.model_type == "bert"
    assert details.removed_head == "BertForMaskedLM head"
    assert details.files["model.safetensors"] == (tiny_mlm / "model.safetensors").stat().st_size
    assert "pytorch_model.bin" in details.files and details.has_safetensors
    expected = sum(p.stat().st_size for p in tiny_mlm.iterdir() if p.name != "pytorch_model.bin")
    assert details.download_size == expected
    assert not details.gated and not details.private


def test_download_fetches_safetensors_not_pickle_reports_progress_and_trains(hub, tmp_path, tiny_mlm):
    seen = []
    folder = qhub.download_model("acme/tiny-bert", endpoint=hub.url, cache_dir=str(tmp_path / "hf"),
                                 progress=lambda p: seen.append((p.done, p.total)))
    from pathlib import Path
    names = sorted(p.name for p in Path(folder).iterdir())
    assert "model.safetensors" in names and "pytorch_model.bin" not in names
    assert (Path(folder) / "model.safetensors").read_bytes() == (tiny_mlm / "model.safetensors").read_bytes()
    assert seen and seen[-1][0] == seen[-1][1] == qhub.model_details("acme/tiny-bert", endpoint=hub.url).download_size
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # a second download comes from the cache: no file is fetched again
    hub.requests.clear()
    assert qhub.download_model("acme/tiny-bert", endpoint=hub.url, cache_dir=str(tmp_path / "hf")) == folder
    assert not [r for r in hub.requests if r.startswith("GET") and "/resolve/" in r]
    # the downloaded snapshot is a normal model folder the engine loads and fine-tunes
    from qarac_gui.core.model.backbone import load_backbone
    from qarac_gui.core.project.config import BackboneConfig
    loaded = load_backbone(BackboneConfig(model=folder), tmp_path)
    assert loaded.architecture == "BertForMaskedLM" and "cls" in loaded.removed


def test_cancel_half_way_then_retry_resumes(hub, tmp_path):
    hub.slow = 0.01
    cancel = threading.Event()

    def cancel_after_some(p):
        if p.done > 20_000:
            cancel.set()
    with pytest.raises(qhub.DownloadCancelled, match="start it again to resume"):
        qhub.download_model("acme/tiny-bert", endpoint=hub.url, cache_dir=str(tmp_path / "hf"),
                            progress=cancel_after_some, cancel=cancel)
    hub.slow = 0.0
    folder = qhub.download_model("acme/tiny-bert", endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    from transformers import AutoModel
    assert AutoModel.from_pretrained(folder).config.hidden_size == 32


@pytest.mark.parametrize("repo,message", [
    ("acme/missing", "was not found on the Hub"),
    ("acme/private-bert", "was not found on the Hub (or it is private"),
    ("acme/busy", "rate-limiting"),
])
def test_hub_errors_have_plain_messages(hub, repo, message):
    with pytest.raises(qhub.HubError, match=message.replace("(", r"\(")):
        qhub.model_details(repo, endpoint=hub.url)


def test_gated_download_says_how_to_get_access_and_a_token_opens_private_repos(hub, tmp_path):
    with pytest.raises(qhub.HubError, match="is gated: .*Request it on the model's Hub page"):
        qhub.download_model("acme/gated-bert", endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    folder = qhub.download_model("acme/gated-bert", endpoint=hub.url, token=TOKEN, cache_dir=str(tmp_path / "hf"))
    assert folder.endswith(qhub.model_details("acme/gated-bert", endpoint=hub.url).sha)
    assert qhub.model_details("acme/private-bert", endpoint=hub.url, token=TOKEN).private


def test_unreachable_hub_is_a_clear_message():
    from huggingface_hub import constants
    old, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, False
    try:
        with pytest.raises(qhub.HubError, match="cannot reach the Hub|did not answer"):
            qhub.model_details("acme/x", endpoint="http://127.0.0.1:9")
    finally:
        constants.HF_HUB_OFFLINE = old


def test_offline_mode_offers_only_the_cache(hub, tmp_path, monkeypatch):
    folder = qhub.download_model("acme/tiny-bert", endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert qhub.hub_offline()
    with pytest.raises(qhub.HubError, match="offline"):
        qhub.ModelSearch(endpoint=hub.url)
    hub.requests.clear()
    assert qhub.download_model("acme/tiny-bert", cache_dir=str(tmp_path / "hf")) == folder
    assert hub.requests == []
    with pytest.raises(qhub.HubError, match="not in the cache"):
        qhub.download_model("acme/encoder-0", cache_dir=str(tmp_path / "hf"))


@pytest.fixture
def token_store(hub, tmp_path, monkeypatch):
    """huggingface_hub's own token files, moved into tmp; its login check pointed at the stand-in."""
    from huggingface_hub import constants
    from huggingface_hub.hf_api import api
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "stored_tokens"))
    monkeypatch.setattr(api, "endpoint", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return tmp_path / "hf-home"


def test_log_in_keeps_the_token_only_in_huggingface_hubs_store(hub, token_store, tmp_path):
    assert qhub.current_user(hub.url) is None
    with pytest.raises(qhub.HubError, match="refused the token"):
        qhub.log_in("hf_wrong")
    assert not (token_store / "token").exists()
    assert qhub.log_in(f"  {TOKEN}\n") == "tester"
    assert (token_store / "token").read_text().strip() == TOKEN
    assert qhub.current_user(hub.url) == "tester"
    # with the saved login, private repos open without passing a token
    assert qhub.model_details("acme/private-bert", endpoint=hub.url).private
    folder = qhub.download_model("acme/gated-bert", endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    assert folder


def test_empty_token_is_refused_with_where_to_get_one():
    with pytest.raises(qhub.HubError, match="Access Tokens"):
        qhub.log_in("   ")


@pytest.mark.slow
def test_a_download_cut_off_half_way_is_retried_and_arrives_intact(hub, tmp_path, tiny_mlm):
    # huggingface_hub writes in blocks of up to 10 MB and resumes from the last whole block (with a Range
    # request); this file is smaller than a block, so the retry fetches it again from the start.
    hub.cut_after = 40_000                  # the weights file is ~120 kB: the connection drops a third of the way
    folder = qhub.download_model("acme/tiny-bert", endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    from pathlib import Path
    assert (Path(folder) / "model.safetensors").read_bytes() == (tiny_mlm / "model.safetensors").read_bytes()
    assert hub.cut_after == 0                                   # the cut happened
    gets = [r for r in hub.requests if r.startswith("GET") and r.endswith("/model.safetensors")]
    assert len(gets) == 2                                       # the cut request, and the retry


def test_cached_models_are_listed_for_offline_use(hub, tmp_path):
    assert qhub.cached_models(str(tmp_path / "hf")) == []
    qhub.download_model("acme/tiny-bert", endpoint=hub.url, cache_dir=str(tmp_path / "hf"))
    assert qhub.cached_models(str(tmp_path / "hf")) == ["acme/tiny-bert"]


def test_a_hub_that_does_not_answer_in_time_is_a_clear_message(hub, monkeypatch):
    monkeypatch.setattr(qhub, "HUB_TIMEOUT", 0.5)
    hub.delay = 2.0
    with pytest.raises(qhub.HubError, match="did not answer in time"):
        qhub.model_details("acme/tiny-bert", endpoint=hub.url)


def test_search_without_network_fails_fast_with_a_clear_message(monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(qhub.HubError, match="cannot reach the Hub .*work offline with cached and local models"):
        qhub.ModelSearch("bert", endpoint="http://127.0.0.1:9")
