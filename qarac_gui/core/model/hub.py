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

from qarac_gui.core.errors import UserError

HUB_TIMEOUT: float | None = None  # a metadata request's own limit in seconds; None: request_limit(), as for all
HUB_TRIES = 2                     # a Hub request that fails is tried once more; after that the Hub counts as down,
HUB_DOWN_FOR = 15.0               # and requests to it fail at once for this many seconds after its last failure
STALE_PART = 600.0                # seconds after which a partial download nobody writes to is left over from a crash
SORTS = {"downloads": "downloads", "likes": "likes", "updated": "last_modified"}
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.msgpack", "*.h5", "*.ot", "*.onnx",
                   "*.tflite", "flax_model*", "tf_model*", "rust_model*", "onnx/*", "openvino/*"]


class HubError(UserError):
    """A Hub request failed; the message says why in plain words and what to do."""


class DownloadCancelled(HubError):
    """The user cancelled a download; what was fetched so far stays in the cache and a retry resumes."""


class HubDown(HubError):
    """The Hub could not be asked: it timed out, could not be reached, or answered with a server error or 429.
    Unlike a missing or gated repository, a cached copy may stand in for what was asked."""


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


def request_limit() -> float:
    """Seconds a Hub request may stay silent before it counts as failed: huggingface_hub's own HF_HUB_ETAG_TIMEOUT
    and HF_HUB_DOWNLOAD_TIMEOUT (10 s unless set), whichever is larger, for every request."""
    from huggingface_hub import constants
    return float(max(constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT))


_guard_lock = threading.Lock()
_guarded = False
_health: dict[tuple[str, int | None], tuple[int, float, Any]] = {}    # host -> (failures in a row, when, last one)


def guard_hub_requests() -> None:
    """Bound every request huggingface_hub makes in this process (transformers and datasets use it too).

    On its own, a file whose metadata request times out is asked for again with a 60 s limit, up to five times with
    back-off, and search pages get five retries: a stalled Hub took minutes to report, a failing one 23 s. The
    shared client it uses is replaced by one that limits each request to request_limit(), and, once a host failed
    HUB_TRIES times in a row, refuses requests to it for HUB_DOWN_FOR s: huggingface_hub takes the refusal for
    being offline, so its retries stop and it falls back to the cache. Idempotent; every Hub call here runs it.
    """
    global _guarded
    if _guarded:
        return
    with _guard_lock:
        if not _guarded:
            from huggingface_hub import set_client_factory
            set_client_factory(_guarded_client)
            _guarded = True


def forget_hub_failures() -> None:
    """Let the next request try the Hub again at once (e.g. when the user asks to retry)."""
    with _guard_lock:
        _health.clear()


def _failed(host: tuple[str, int | None], failure: Any) -> None:
    with _guard_lock:
        failures = _health.get(host, (0, 0.0, None))[0]
        _health[host] = (failures + 1, time.monotonic(), failure)


def _answered(host: tuple[str, int | None]) -> None:
    with _guard_lock:
        _health.pop(host, None)


def _refuse_if_down(host: tuple[str, int | None]) -> None:
    with _guard_lock:
        failures, when, failure = _health.get(host, (0, 0.0, None))
    if failures >= HUB_TRIES and time.monotonic() - when < HUB_DOWN_FOR:
        raise _guard_classes()[0](host[0], failure)


@functools.cache
def _guard_classes():
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils._http import default_client_factory

    class HubUnreachable(OfflineModeIsEnabled):
        """A request refused because its host just failed HUB_TRIES times; `failure` is the last exception or
        HTTP status. An OfflineModeIsEnabled, so huggingface_hub neither retries it nor hides a cached copy."""

        def __init__(self, host: str, failure: Any) -> None:
            super().__init__(f"{host} failed {HUB_TRIES} times in a row, last with {failure!r}; not asked again "
                             f"for {HUB_DOWN_FOR:.0f} s")
            self.failure = failure

    transient = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)

    class WatchedStream(httpx2.SyncByteStream):
        """A streamed body: a download that stalls or breaks half-way counts as a failure of its host."""

        def __init__(self, inner: Any, host: tuple[str, int | None]) -> None:
            self.inner, self.host = inner, host

        def __iter__(self):
            try:
                yield from self.inner
            except transient as e:
                _failed(self.host, e)
                raise

        def close(self) -> None:
            self.inner.close()

    class GuardedClient(httpx2.Client):
        def send(self, request: Any, **kwargs: Any) -> Any:
            host = (request.url.host, request.url.port)
            _refuse_if_down(host)
            limit = request_limit()
            asked = request.extensions.get("timeout") or {}
            request.extensions = {**request.extensions, "timeout": {
                k: limit if asked.get(k) is None else min(asked[k], limit) for k in ("connect", "read", "write",
                                                                                      "pool")}}
            try:
                response = super().send(request, **kwargs)
            except transient as e:
                _failed(host, e)
                raise
            if response.status_code >= 500 or response.status_code == 429:
                _failed(host, response.status_code)
            else:
                _answered(host)
            if kwargs.get("stream"):
                response.stream = WatchedStream(response.stream, host)
            return response

    def client_factory() -> Any:
        base = default_client_factory()       # huggingface_hub's own settings: its request hook, redirects
        client = GuardedClient(event_hooks=base.event_hooks, follow_redirects=base.follow_redirects,
                               timeout=base.timeout)
        base.close()
        return client

    return HubUnreachable, client_factory


def _guarded_client() -> Any:
    return _guard_classes()[1]()


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


def _call(fn: Callable[[], Any], what: str) -> Any:
    """Run a Hub call and turn its failures into one plain message each."""
    guard_hub_requests()
    try:
        return fn()
    except (StopIteration, HubError):
        raise
    except Exception as e:
        kind, _ = _failure(e)
        raise (HubDown if kind in TRANSIENT else HubError)(explain(e, what)) from e


TRANSIENT = ("timeout", "unreachable", "broken", "server", "rate")


def _failure(error: BaseException) -> tuple[str, Any]:
    """(kind, detail) of the failure that says most, looked for through the exceptions huggingface_hub and
    transformers wrap it in ("We couldn't connect...", "An error happened while trying to locate the file...")."""
    from huggingface_hub import errors
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 12:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for e in seen:
        if isinstance(e, _guard_classes()[0]):      # a refused request: what failed before it says why
            if isinstance(e.failure, int):
                return ("rate", 429) if e.failure == 429 else ("server", e.failure)
            e = e.failure
        if isinstance(e, errors.GatedRepoError):
            return "gated", None
        if isinstance(e, errors.RepositoryNotFoundError):
            return "not found", None
        if isinstance(e, errors.RevisionNotFoundError):
            return "revision", None
        if isinstance(e, errors.RemoteEntryNotFoundError):
            url = str(getattr(getattr(e, "response", None), "url", ""))
            return "no file", url.split("/resolve/", 1)[-1].partition("/")[2] if "/resolve/" in url else ""
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return str(status), status
        if status == 429:
            return "rate", status
        if status is not None and status >= 500:
            return "server", status
        name, text = type(e).__name__, _first_line(e)
        if "Timeout" in name or "timed out" in text.lower():
            return "timeout", text
        if "Connect" in name or "Name or service" in text:
            return "unreachable", text
        if name in ("RemoteProtocolError", "ReadError", "WriteError", "NetworkError") or \
                text.startswith("Consistency check failed"):
            return "broken", text
    return "", _first_line(error)


def hub_failure_message(error: BaseException, what: str) -> str | None:
    """explain(), when the error comes from a Hub request (however deep transformers or datasets wrapped it)."""
    return explain(error, what) if _failure(error)[0] else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def explain(error: BaseException, what: str) -> str:
    kind, detail = _failure(error)
    if kind == "gated":
        return (f"{what} is gated: its authors must grant you access. Request it on the model's Hub page while "
                "logged in, then log in here with a token of that account")
    if kind == "not found":
        return (f"{what} was not found on the Hub (or it is private and this account cannot see it); check the id "
                "or log in with a token that has access")
    if kind == "revision":
        return f"{what}: that revision (branch, tag or commit) does not exist"
    if kind == "no file":
        return f"{what}: a file it needs{f' ({detail})' if detail else ''} is not on the Hub"
    if kind == "401":
        return f"{what}: the Hub refused the token (401); log in again with a valid token"
    if kind == "403":
        return f"{what}: access denied (403); this account may lack permission"
    if kind == "rate":
        return f"{what}: the Hub is rate-limiting requests (429); wait a minute and try again"
    if kind == "server":
        return f"{what}: the Hub had a server error ({detail}); try again later"
    if kind == "timeout":
        return f"{what}: the Hub did not answer in time; check the connection and try again"
    if kind == "unreachable":
        return (f"{what}: cannot reach the Hub ({detail}); check the network, or work offline with cached and "
                "local models")
    if kind == "broken":
        return f"{what}: the connection to the Hub broke off during the download ({detail}); try again to resume"
    return f"{what}: {detail}"


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
