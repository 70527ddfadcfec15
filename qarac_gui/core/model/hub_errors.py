"""A failed Hub request in plain words: the errors the app raises for it, and what each failure of huggingface_hub,
httpx or the network means to a user."""

from __future__ import annotations

from typing import Any, Callable

from qarac_gui.core.errors import UserError
from qarac_gui.core.model.hub_requests import _guard_classes, guard_hub_requests


class HubError(UserError):
    """A Hub request failed; the message says why in plain words and what to do."""


class DownloadCancelled(HubError):
    """The user cancelled a download; what was fetched so far stays in the cache and a retry resumes."""


class HubDown(HubError):
    """The Hub could not be asked: it timed out, could not be reached, or answered with a server error or 429.
    Unlike a missing or gated repository, a cached copy may stand in for what was asked."""


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
