"""Datasets on the Hub, for a task's data: search them, list configs and splits, see features and first rows.

Everything goes through `datasets` and `huggingface_hub` as they are configured (HF_ENDPOINT, HF_HUB_OFFLINE, the
saved login), exactly as the run's own `load_dataset` call later does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from qarac_gui.core.hub import SORTS, HubError, _api, _call, hub_offline

PREVIEW_ROWS = 10


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
            raise HubError("offline (HF_HUB_OFFLINE is set): Hub search is not available; use a local data file")
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
