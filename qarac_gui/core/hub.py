"""The Hugging Face Hub through huggingface_hub: search models, inspect one, download it into the shared HF cache.

Every function takes `endpoint` (None: the default, HF_ENDPOINT) and `token` (None: the user's saved login), so the
same code serves the public Hub, a private mirror and the tests' stand-in server.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from qarac_gui.core.errors import UserError

HUB_TIMEOUT = 20.0                # seconds to wait for the Hub to answer a metadata request
SORTS = {"downloads": "downloads", "likes": "likes", "updated": "last_modified"}
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.msgpack", "*.h5", "*.ot", "*.onnx",
                   "*.tflite", "flax_model*", "tf_model*", "rust_model*", "onnx/*", "openvino/*"]


class HubError(UserError):
    """A Hub request failed; the message says why in plain words and what to do."""


class DownloadCancelled(HubError):
    """The user cancelled a download; what was fetched so far stays in the cache and a retry resumes."""


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


@dataclass
class DownloadProgress:
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def speed(self) -> float:
        return self.done / max(1e-9, time.monotonic() - self.started)


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
        raise HubError("the Hub did not answer in time; check the connection and try again") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise HubError("the Hub did not answer in time; check the connection and try again") from e
        raise HubError(f"cannot reach the Hub ({reason}); check the network, or work offline with cached and "
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
        private=bool(info.private), license=_license(info), parameters=_parameters(info))


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

    Files already in the cache are not fetched again, and a download that was cancelled or cut off resumes.
    """
    if hub_offline():
        from huggingface_hub import snapshot_download
        try:
            return snapshot_download(repo_id, revision=revision, local_files_only=True, cache_dir=cache_dir,
                                     ignore_patterns=None if allow_pickle else PICKLE_PATTERNS)
        except Exception as e:
            raise HubError(f"offline (HF_HUB_OFFLINE is set) and {repo_id!r} is not in the cache; connect to "
                           "download it once, or choose a local model folder") from e
    details = model_details(repo_id, revision, endpoint=endpoint, token=token, allow_pickle=allow_pickle)
    if not details.has_safetensors and not allow_pickle:
        raise HubError(f"{repo_id!r} has only pickle weights (pytorch_model.bin), which can run code when loaded; "
                       "allow pickle weights for this model only if you trust its authors")
    state = DownloadProgress(total=details.download_size)
    from huggingface_hub import snapshot_download
    bar_class = _progress_class(state, progress, cancel)
    try:
        return _call(lambda: snapshot_download(
            repo_id, revision=revision, endpoint=endpoint, token=token, cache_dir=cache_dir,
            ignore_patterns=None if allow_pickle else PICKLE_PATTERNS, tqdm_class=bar_class, max_workers=4),
            repo_id)
    except DownloadCancelled:
        raise
    except HubError as e:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(f"download of {repo_id} cancelled; start it again to resume") from e
        raise


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


def _call(fn: Callable[[], Any], what: str) -> Any:
    """Run a Hub call and turn its failures into one plain message each."""
    try:
        return fn()
    except (StopIteration, DownloadCancelled):
        raise
    except Exception as e:
        raise HubError(explain(e, what)) from e


def explain(error: BaseException, what: str) -> str:
    from huggingface_hub import errors
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, errors.GatedRepoError):
        return (f"{what} is gated: its authors must grant you access. Request it on the model's Hub page while "
                "logged in, then log in here with a token of that account")
    if isinstance(error, errors.RepositoryNotFoundError):
        return (f"{what} was not found on the Hub (or it is private and this account cannot see it); check the id "
                "or log in with a token that has access")
    if isinstance(error, errors.RevisionNotFoundError):
        return f"{what}: that revision (branch, tag or commit) does not exist"
    if status == 401:
        return f"{what}: the Hub refused the token (401); log in again with a valid token"
    if status == 403:
        return f"{what}: access denied (403); this account may lack permission"
    if status == 429:
        return f"{what}: the Hub is rate-limiting requests (429); wait a minute and try again"
    if status is not None and status >= 500:
        return f"{what}: the Hub had a server error ({status}); try again later"
    name = type(error).__name__
    text = str(error).splitlines()[0] if str(error) else name
    if "Timeout" in name or "timed out" in text.lower():
        return f"{what}: the Hub did not answer in time; check the connection and try again"
    if "Connect" in name or "Network" in name or "Name or service" in text:
        return (f"{what}: cannot reach the Hub ({text}); check the network, or work offline with cached and "
                "local models")
    return f"{what}: {text}"


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
