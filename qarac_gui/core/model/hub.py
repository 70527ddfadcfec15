"""The Hugging Face Hub through huggingface_hub: search models, inspect one, download it into the shared HF cache.

Every function takes `endpoint` (None: the default, HF_ENDPOINT) and `token` (None: the user's saved login), so the
same code serves the public Hub, a private mirror and the tests' stand-in server.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from qarac_gui.core.model.hub_errors import (  # noqa: F401  (the Hub's API here, with the rest)
    DownloadCancelled,
    HubDown,
    HubError,
    _call,
    explain,
    hub_failure_message,
)
from qarac_gui.core.model.hub_requests import (  # noqa: F401  (the Hub's API here, with the rest)
    forget_hub_failures,
    guard_hub_requests,
    request_limit,
)

HUB_TIMEOUT: float | None = None  # a metadata request's own limit in seconds; None: request_limit(), as for all
STALE_PART = 600.0                # seconds after which a partial download nobody writes to is left over from a crash
SORTS = {"downloads": "downloads", "likes": "likes", "updated": "last_modified"}
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.msgpack", "*.h5", "*.ot", "*.onnx",
                   "*.tflite", "flax_model*", "tf_model*", "rust_model*", "onnx/*", "openvino/*"]


@dataclass(frozen=True)
class ModelHit:
    id: str
    downloads: int
    likes: int
    last_modified: str            # ISO date, "" when unknown
    pipeline_tag: str
    license: str
    parameters: int | None        # from safetensors metadata, when the Hub gives it
    gated: bool
    private: bool


@dataclass(frozen=True)
class ModelDetails:
    id: str
    sha: str
    architecture: str             # as saved, e.g. BertForMaskedLM
    model_type: str
    removed_head: str             # what the app will remove ("" for a bare encoder, or when unknown)
    files: dict[str, int]         # path -> size in bytes
    download_size: int            # bytes of the files a download would fetch
    has_safetensors: bool
    gated: bool
    private: bool
    license: str
    parameters: int | None
    hashes: dict[str, str] = field(default_factory=dict)   # path -> sha256 of a Git LFS file, else its git blob id


@dataclass
class DownloadProgress:
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def speed(self) -> float:
        return self.done / max(1e-9, time.monotonic() - self.started)


def download_message(repo_id: str, p: DownloadProgress) -> str:
    return f"Downloading {repo_id}: {p.done / 1e6:.1f} of {p.total / 1e6:.1f} MB ({p.speed / 1e6:.1f} MB/s)"


def throttled(report: Callable[[DownloadProgress], None], every: float) -> Callable[[DownloadProgress], None]:
    """`report`, called at most once per `every` seconds, and always for the last bytes: a download reports every
    chunk, far more often than anyone can read."""
    shown = [0.0]

    def call(p: DownloadProgress) -> None:
        if time.monotonic() - shown[0] >= every or p.done >= p.total:
            shown[0] = time.monotonic()
            report(p)
    return call


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set: only cached and local models can be used (huggingface_hub's own flag)."""
    from huggingface_hub import constants
    return bool(constants.is_offline_mode())


def check_reachable(endpoint: str | None = None, timeout: float = 5.0) -> None:
    """Fail fast, with a plain message, when the Hub cannot be reached (huggingface_hub's own retries on a dead
    network take about 20 s)."""
    import socket
    import urllib.error
    import urllib.request

    from huggingface_hub import constants
    url = (endpoint or constants.ENDPOINT).rstrip("/") + "/api/models?limit=1"
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return                          # it answered: reachable, whatever it thinks of the request
    except (TimeoutError, socket.timeout) as e:
        raise HubDown("the Hub did not answer in time; check the connection and try again") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise HubDown("the Hub did not answer in time; check the connection and try again") from e
        raise HubDown(f"cannot reach the Hub ({reason}); check the network, or work offline with cached and "
                      "local models") from e


def cached_models(cache_dir: str | None = None) -> list[str]:
    """Hub ids of the models already in the Hugging Face cache (usable offline), most recently used first."""
    from huggingface_hub import scan_cache_dir
    try:
        info = scan_cache_dir(cache_dir)
    except Exception:                   # no cache yet, or one this version cannot read: nothing to offer
        return []
    repos = sorted((r for r in info.repos if r.repo_type == "model"), key=lambda r: r.last_accessed, reverse=True)
    return [r.repo_id for r in repos]


def _api(endpoint: str | None, token: str | bool | None):
    from huggingface_hub import HfApi
    return HfApi(endpoint=endpoint, token=token)


def _license(info: Any) -> str:
    card = getattr(info, "card_data", None) or getattr(info, "cardData", None)
    value = card.get("license") if hasattr(card, "get") else getattr(card, "license", None)
    if value:
        return str(value)
    tags = getattr(info, "tags", None) or []
    return next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), "")


def _parameters(info: Any) -> int | None:
    st = getattr(info, "safetensors", None)
    total = getattr(st, "total", None) if st is not None else None
    return int(total) if total else None


def _hit(info: Any) -> ModelHit:
    modified = getattr(info, "last_modified", None) or getattr(info, "lastModified", None)
    return ModelHit(
        id=info.id, downloads=int(getattr(info, "downloads", 0) or 0), likes=int(getattr(info, "likes", 0) or 0),
        last_modified=modified.date().isoformat() if hasattr(modified, "date") else str(modified or ""),
        pipeline_tag=getattr(info, "pipeline_tag", None) or "", license=_license(info),
        parameters=_parameters(info), gated=bool(getattr(info, "gated", False)),
        private=bool(getattr(info, "private", False)))


class ModelSearch:
    """One search, read a page at a time (the Hub pages with Link headers; huggingface_hub follows them).

    The defaults find encoders the app's heads suit (fill-mask models in transformers format); any filter can be
    cleared, and any id can be typed instead.
    """

    def __init__(self, query: str = "", *, pipeline_tag: str | None = "fill-mask", library: str | None = "transformers",
                 language: str | None = None, sort: str = "downloads", page_size: int = 20,
                 endpoint: str | None = None, token: str | bool | None = None) -> None:
        if sort not in SORTS:
            raise HubError(f"sort: {sort!r} is not one of {', '.join(SORTS)}")
        if hub_offline():
            raise HubError("offline (HF_HUB_OFFLINE is set): Hub search is not available; use a cached or local "
                           "model")
        check_reachable(endpoint)
        filters = [f for f in (library, language) if f]
        self.page_size = page_size
        self._iter: Iterator[Any] = iter(_call(lambda: _api(endpoint, token).list_models(
            search=query or None, pipeline_tag=pipeline_tag or None, filter=filters or None, sort=SORTS[sort],
            limit=None, expand=["downloads", "likes", "lastModified", "pipeline_tag", "safetensors", "tags",
                                "gated", "private", "cardData"]), "model search"))
        self.exhausted = False

    def next_page(self) -> list[ModelHit]:
        hits: list[ModelHit] = []
        while len(hits) < self.page_size and not self.exhausted:
            try:
                info = _call(lambda: next(self._iter), "model search")
            except StopIteration:
                self.exhausted = True
                break
            hits.append(_hit(info))
        return hits


def model_details(repo_id: str, revision: str | None = None, *, endpoint: str | None = None,
                  token: str | bool | None = None, allow_pickle: bool = False) -> ModelDetails:
    """What a download would bring, before downloading: architecture, files and sizes, access."""
    if hub_offline():
        raise HubError(f"offline (HF_HUB_OFFLINE is set): cannot look up {repo_id!r} on the Hub")
    info = _call(lambda: _api(endpoint, token).model_info(repo_id, revision=revision, files_metadata=True,
                                                          timeout=HUB_TIMEOUT), repo_id)
    files = {s.rfilename: int(s.size or 0) for s in (info.siblings or [])}
    hashes = {s.rfilename: s.lfs.sha256 if s.lfs is not None else s.blob_id for s in (info.siblings or [])
              if (s.lfs is not None and s.lfs.sha256) or s.blob_id}
    wanted = download_patterns(files, allow_pickle)
    config = getattr(info, "config", None) or {}
    architectures = config.get("architectures") or []
    architecture = architectures[0] if architectures else ""
    model_type = config.get("model_type", "")
    removed = architecture if architecture and not architecture.endswith("Model") else ""
    return ModelDetails(
        id=info.id, sha=info.sha or "", architecture=architecture, model_type=model_type,
        removed_head=f"{removed} head" if removed else "", files=files,
        download_size=sum(size for name, size in files.items() if _matches(name, wanted)),
        has_safetensors=any(n.endswith(".safetensors") for n in files), gated=bool(info.gated),
        private=bool(info.private), license=_license(info), parameters=_parameters(info), hashes=hashes)


def download_patterns(files: dict[str, int] | list[str], allow_pickle: bool) -> list[str] | None:
    """Which files to fetch: everything but pickle weights (unless allowed, or when there are no safetensors)."""
    if allow_pickle:
        return None
    return [n for n in files if not _matches(n, PICKLE_PATTERNS)]


def _matches(name: str, patterns: list[str] | None) -> bool:
    import fnmatch
    if patterns is None:
        return True
    return any(fnmatch.fnmatch(name, p) or name == p for p in patterns)


def download_model(repo_id: str, revision: str | None = None, *, allow_pickle: bool = False,
                   progress: Callable[[DownloadProgress], None] | None = None, cancel: threading.Event | None = None,
                   endpoint: str | None = None, token: str | bool | None = None,
                   cache_dir: str | None = None) -> str:
    """Fetch a model into the shared Hugging Face cache and return its snapshot folder.

    Files already in the cache are not fetched again, and a download that was cancelled or cut off resumes. Cached
    files are checked against the Hub's sizes and hashes; a damaged one is fetched again.
    """
    if hub_offline():
        from huggingface_hub import snapshot_download
        try:
            folder = snapshot_download(repo_id, revision=revision, local_files_only=True, cache_dir=cache_dir,
                                       ignore_patterns=None if allow_pickle else PICKLE_PATTERNS)
        except Exception as e:
            raise HubError(f"offline (HF_HUB_OFFLINE is set) and {repo_id!r} is not in the cache; connect to "
                           "download it once, or choose a local model folder") from e
        _refuse_damaged(repo_id, folder, _damaged(folder, {}), "offline (HF_HUB_OFFLINE is set)")
        return folder
    details = model_details(repo_id, revision, endpoint=endpoint, token=token, allow_pickle=allow_pickle)
    if not details.has_safetensors and not allow_pickle:
        raise HubError(f"{repo_id!r} has only pickle weights (pytorch_model.bin), which can run code when loaded; "
                       "allow pickle weights for this model only if you trust its authors")
    state = DownloadProgress(total=details.download_size)
    from huggingface_hub import hf_hub_download, snapshot_download
    bar_class = _progress_class(state, progress, cancel)
    try:
        folder = _call(lambda: snapshot_download(
            repo_id, revision=revision, endpoint=endpoint, token=token, cache_dir=cache_dir,
            ignore_patterns=None if allow_pickle else PICKLE_PATTERNS, tqdm_class=bar_class, max_workers=4),
            repo_id)
        _clear_stale_parts(folder)
        expected = {name: (size, details.hashes.get(name)) for name, size in details.files.items()
                    if Path(folder).name == details.sha}        # else the branch moved on: the blob names tell
        damaged = _damaged(folder, expected)
        for name, _ in damaged:     # fetched again, whether the cache holds its blob as a link or as a copy
            Path(folder, name).unlink(missing_ok=True)
            _call(functools.partial(hf_hub_download, repo_id, name, revision=Path(folder).name, endpoint=endpoint,
                                    token=token, cache_dir=cache_dir, force_download=True, tqdm_class=bar_class),
                  repo_id)
        if damaged:
            _refuse_damaged(repo_id, folder, _damaged(folder, expected), "it arrived damaged again")
        return folder
    except DownloadCancelled:
        raise
    except HubError as e:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(f"download of {repo_id} cancelled; start it again to resume") from e
        raise


def model_folder(repo_id: str, revision: str | None = None, *, allow_pickle: bool = False,
                 progress: Callable[[DownloadProgress], None] | None = None, cancel: threading.Event | None = None,
                 cache_dir: str | None = None) -> str:
    """The folder a run loads a Hub model from: fetched, completed or repaired through download_model (bounded
    time, plain messages), so that transformers then reads local files only. When the Hub cannot be asked (it
    times out, cannot be reached, or fails), a complete and undamaged cached copy is used instead."""
    try:
        return download_model(repo_id, revision, allow_pickle=allow_pickle, progress=progress, cancel=cancel,
                              cache_dir=cache_dir)
    except HubDown as e:
        folder = _cached_snapshot(repo_id, revision, allow_pickle, cache_dir)
        if folder is None:
            raise
        _refuse_damaged(repo_id, folder, _damaged(folder, {}), str(e))
        return folder


def _cached_snapshot(repo_id: str, revision: str | None, allow_pickle: bool, cache_dir: str | None) -> str | None:
    from huggingface_hub import snapshot_download
    try:        # complete by huggingface_hub's own record of the repository's file list, when it has one
        return snapshot_download(repo_id, revision=revision, local_files_only=True, cache_dir=cache_dir,
                                 ignore_patterns=None if allow_pickle else PICKLE_PATTERNS)
    except Exception:
        return None


_digests: dict[tuple[str, str, int, int], str] = {}     # (kind, blob, size, mtime) -> digest: hashed once


def _digest(path: Path, kind: str) -> str:
    """sha256 of the content, or (kind "git") its git blob id: the two kinds of hash the Hub gives for a file."""
    stat = path.stat()
    key = (kind, str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256() if kind == "sha256" else hashlib.sha1(b"blob %d\0" % stat.st_size)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


def _damaged(folder: str, expected: dict[str, tuple[int, str | None]]) -> list[tuple[str, str]]:
    """(file, what is wrong) for each file of a snapshot whose size or hash is not the Hub's. `expected` holds the
    Hub's size and hash of each file; without it, the cache's own record serves: a blob is named by its hash."""
    import re
    out = []
    root = Path(folder)
    names = [n for n in expected if (root / n).exists()] if expected else \
        sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    for name in names:
        blob = (root / name).resolve()
        size, digest = expected.get(name, (None, None))
        actual = blob.stat().st_size
        if size is not None and actual != size:
            out.append((name, f"{actual} bytes instead of {size}"))
            continue
        if digest is None and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", blob.name):
            digest = blob.name
        if digest and _digest(blob, "sha256" if len(digest) == 64 else "git") != digest:
            out.append((name, "its content does not match the Hub's checksum"))
    return out


def _refuse_damaged(repo_id: str, folder: str, damaged: list[tuple[str, str]], why_not_fetched: str) -> None:
    if not damaged:
        return
    name, what = damaged[0]
    blob = Path(folder, name).resolve()
    raise HubError(f"{repo_id}: {name} in the Hugging Face cache is damaged ({what}) and was not fetched again "
                   f"({why_not_fetched}); delete {blob} (or the whole {Path(folder).parent.parent}) and download the "
                   "model again")


def _clear_stale_parts(folder: str) -> None:
    """Remove partial downloads a crashed or killed process left in this model's cache. huggingface_hub writes
    each download to a file of its own and never reuses one, so they only take space; one still being written
    by a live download is recent, and is kept."""
    now = time.time()
    for part in Path(folder).parent.parent.joinpath("blobs").glob("*.incomplete"):
        try:
            if now - part.stat().st_mtime > STALE_PART:
                part.unlink()
        except OSError:         # another process finished or removed it meanwhile
            pass


def _progress_class(state: DownloadProgress, report: Callable | None, cancel: threading.Event | None):
    from tqdm.auto import tqdm

    class Progress(tqdm):
        """Counts downloaded bytes for the caller and stops the download when it is cancelled."""

        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            self._bytes = kwargs.get("unit") == "B" and not str(kwargs.get("desc", "")).startswith("Downloading")
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("download cancelled; start it again to resume")
            if self._bytes and n:
                state.done += int(n)
                if report is not None:
                    report(state)
            return super().update(n)

    return Progress


def log_in(token: str) -> str:
    """Check a token with the Hub and keep it in huggingface_hub's own token store (shared with every HF tool).

    The app never writes the token anywhere else: not in project files, run folders, logs or exports.
    """
    token = token.strip()
    if not token:
        raise HubError("paste a Hugging Face access token (huggingface.co > Settings > Access Tokens)")
    from huggingface_hub import login
    from huggingface_hub.hf_api import api
    name = _call(lambda: api.whoami(token)["name"], "logging in")
    _call(lambda: login(token=token, add_to_git_credential=False, skip_if_logged_in=False), "saving the token")
    return name


def current_user(endpoint: str | None = None) -> str | None:
    """The account of the saved token, or None when there is no saved token."""
    from huggingface_hub import get_token
    token = get_token()
    if not token:
        return None
    return _call(lambda: _api(endpoint, token).whoami()["name"], "the saved token")
