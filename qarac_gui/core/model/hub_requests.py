"""Every Hub request this process makes, bounded: a time limit per request, and a host that failed HUB_TRIES times
in a row refused for HUB_DOWN_FOR seconds, so that huggingface_hub stops retrying and falls back to its cache."""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

HUB_TRIES = 2                     # a Hub request that fails is tried once more; after that the Hub counts as down,
HUB_DOWN_FOR = 15.0               # and requests to it fail at once for this many seconds after its last failure


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
