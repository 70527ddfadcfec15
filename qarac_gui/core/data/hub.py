"""Datasets on the Hub, for a task's data: search them, list configs and splits, see features and first rows.

Everything goes through `datasets` and `huggingface_hub` as they are configured (HF_ENDPOINT, HF_HUB_OFFLINE, the
saved login), exactly as the run's own `load_dataset` call later does.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from qarac_gui.core.model.hub import (
    SORTS,
    DownloadProgress,
    HubDown,
    HubError,
    _api,
    _call,
    _progress_class,
    check_reachable,
    hub_offline,
)

PREVIEW_ROWS = 10
REACH_TIMEOUT = 5.0         # seconds the Hub has to answer one small request before it counts as unreachable
OFFLINE = ("offline (HF_HUB_OFFLINE is set): Hub datasets cannot be searched or looked up; use a local data file "
           "for this task")


@dataclass(frozen=True)
class DatasetHit:
    id: str
    downloads: int
    likes: int
    last_modified: str


@dataclass(frozen=True)
class DatasetDetails:
    id: str
    config: str
    configs: list[str]
    splits: list[str]
    features: dict[str, str]          # column -> type, as datasets declares it (or as the first rows show it)
    rows: list[dict]                  # the first rows of the chosen split, streamed (nothing else is downloaded)


class DatasetSearch:
    """One dataset search, read a page at a time."""

    def __init__(self, query: str = "", *, sort: str = "downloads", page_size: int = 20,
                 endpoint: str | None = None, token: str | bool | None = None) -> None:
        if hub_offline():
            raise HubError(OFFLINE)
        check_datasets_reachable(endpoint)
        self.page_size = page_size
        self._iter: Iterator[Any] = iter(_call(lambda: _api(endpoint, token).list_datasets(
            search=query or None, sort=SORTS.get(sort, "downloads"), expand=["downloads", "likes",
                                                                              "lastModified"]), "dataset search"))
        self.exhausted = False

    def next_page(self) -> list[DatasetHit]:
        hits = []
        while len(hits) < self.page_size and not self.exhausted:
            try:
                info = _call(lambda: next(self._iter), "dataset search")
            except StopIteration:
                self.exhausted = True
                break
            modified = getattr(info, "last_modified", None)
            hits.append(DatasetHit(info.id, int(info.downloads or 0), int(info.likes or 0),
                                   modified.date().isoformat() if hasattr(modified, "date") else ""))
        return hits


def check_datasets_reachable(endpoint: str | None = None) -> None:
    """Fail within REACH_TIMEOUT, in words about datasets, when the Hub cannot be asked: huggingface_hub's and
    datasets' own retries on a dead network take about 20 s and print each retry to the terminal."""
    try:
        check_reachable(endpoint, timeout=REACH_TIMEOUT)
    except HubDown as e:
        reason = getattr(e.__cause__, "reason", e.__cause__)
        if isinstance(reason, TimeoutError):
            raise HubDown("the Hub did not answer in time, so Hub datasets cannot be searched or looked up now; "
                          "check the connection and try again, or use a local data file for this task") from None
        raise HubDown(f"cannot reach the Hub ({reason}), so Hub datasets cannot be searched or looked up now; check "
                      "the network and try again, or use a local data file for this task") from None


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return f"list[{_type_name(value[0]) if value else '?'}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_type_name(v)}" for k, v in value.items()) + "}"
    return type(value).__name__


def dataset_details(repo_id: str, config: str | None = None, split: str | None = None,
                    rows: int = PREVIEW_ROWS) -> DatasetDetails:
    """Configs, splits, features and the first rows of a Hub dataset, streamed rather than downloaded."""
    if not hub_offline():               # offline, datasets reads its own cache
        check_datasets_reachable()
    import datasets
    from datasets.utils.logging import disable_progress_bar, set_verbosity_error
    disable_progress_bar()
    set_verbosity_error()
    configs = _call(lambda: datasets.get_dataset_config_names(repo_id), repo_id)
    config = config or configs[0]
    if config not in configs:
        raise HubError(f"{repo_id}: no config {config!r} (it has: {', '.join(configs)})")
    splits = _call(lambda: datasets.get_dataset_split_names(repo_id, config), repo_id)
    split = split or ("train" if "train" in splits else splits[0])
    if split not in splits:
        raise HubError(f"{repo_id}: no split {split!r} in config {config!r} (it has: {', '.join(splits)})")
    stream = _call(lambda: datasets.load_dataset(repo_id, config, split=split, streaming=True), repo_id)
    first = _call(lambda: list(stream.take(rows)), repo_id)
    if stream.features is not None:
        features = {name: _describe(feature) for name, feature in stream.features.items()}
    else:
        features = {name: _type_name(value) for name, value in (first[0] if first else {}).items()}
    return DatasetDetails(repo_id, config, configs, splits, features, first)


def _describe(feature: Any) -> str:
    names = getattr(feature, "names", None)
    if names:
        return f"class label ({', '.join(map(str, names[:6]))}{', …' if len(names) > 6 else ''})"
    dtype = getattr(feature, "dtype", None)
    return str(dtype) if dtype else type(feature).__name__


def fetch_task_data(data: Any, progress: Callable[[DownloadProgress], None] | None = None,
                    cancel: threading.Event | None = None) -> DownloadProgress:
    """fetch_dataset_files for a task's data settings: its Hub dataset, config, train and validation splits."""
    splits = [data.train_split] + ([data.validation_split] if data.validation_split else [])
    return fetch_dataset_files(data.hub, data.hub_config or None, splits, progress=progress, cancel=cancel)


def fetch_dataset_files(repo_id: str, config: str | None, splits: list[str], *,
                        progress: Callable[[DownloadProgress], None] | None = None,
                        cancel: threading.Event | None = None, token: str | bool | None = None) -> DownloadProgress:
    """Download the data files of a Hub dataset's config and splits into the shared Hugging Face cache, with byte
    progress, before `load_dataset` reads them (it then finds them cached; it reports no progress of its own).

    Returns what was fetched (done: bytes downloaded now; total: bytes the files take). Offline: nothing to do.
    """
    state = DownloadProgress()
    if hub_offline():
        return state
    import datasets
    from huggingface_hub import HfFileSystem, snapshot_download
    from huggingface_hub import constants as hub_constants
    builder = _call(lambda: datasets.load_dataset_builder(repo_id, config or None, token=token), repo_id)
    by_revision: dict[str, list[str]] = {}
    fs = HfFileSystem(endpoint=hub_constants.ENDPOINT, token=token)
    for split in splits:
        for url in (builder.config.data_files or {}).get(split, []):
            if str(url).startswith("hf://"):
                resolved = _call(functools.partial(fs.resolve_path, str(url)), repo_id)
                by_revision.setdefault(resolved.revision, []).append(resolved.path_in_repo)
    api = _api(None, token)
    for revision, files in by_revision.items():
        infos = _call(lambda: api.get_paths_info(repo_id, files, revision=revision, repo_type="dataset"), repo_id)
        state.total += sum(int(getattr(i, "size", 0) or 0) for i in infos)
    bar_class = _progress_class(state, progress, cancel)
    for revision, files in by_revision.items():
        _call(lambda: snapshot_download(repo_id, repo_type="dataset", revision=revision, allow_patterns=files,
                                        token=token, tqdm_class=bar_class, max_workers=4), repo_id)
    return state
