"""Permission to run code that comes with a model: a repository's own Python (trust_remote_code), and the
`package:` model packages that may be named in a project file.

A project file can come from anyone, so what it says is a request, never a permission. Who grants it depends on
the process: the window asks its user and remembers the answer per repository and revision (StoredAnswers);
qarac-train needs --trust-remote-code on its own command line (CommandLineGrant)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qarac_gui.core import paths
from qarac_gui.core.errors import UserError

# Installed packages that ship a model folder declare it here: name = "module:function returning the folder".
ENTRY_POINT_GROUP = "qarac_gui.models"


class CodeNotAllowed(UserError):
    """A model would run code that nobody allowed; the message names it and how to allow it."""


@dataclass(frozen=True)
class CodeSource:
    """Whose code would run: a Hub repository at a revision, or a local folder as its code is now."""

    repo: str                    # Hub id, or the folder's absolute path
    revision: str                # Hub: as asked ("" is the default branch); folder: a hash of its *.py files
    local: bool

    @property
    def key(self) -> str:
        return f"{'folder' if self.local else 'hub'}:{self.repo}@{self.revision}"

    def describe(self) -> str:
        if self.local:
            return f"the model folder {self.repo}"
        at = f"revision {self.revision}" if self.revision else "its default branch"
        return f"the Hub repository {self.repo} ({at})"


def folder_code_hash(folder: Path) -> str:
    """The code a folder holds now: a change to any of its Python files makes it a new revision to ask about."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(str(path.relative_to(folder)).encode("utf-8", "surrogateescape") + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return "sha256:" + digest.hexdigest()[:16]


def code_source(source: str, local: bool, revision: str) -> CodeSource:
    if local:
        folder = Path(source).resolve()
        return CodeSource(str(folder), folder_code_hash(folder), True)
    return CodeSource(source, revision, False)


class CodePolicy(Protocol):
    how_to_allow: str

    def answer(self, source: CodeSource) -> bool | None:
        """True: allowed; False: refused; None: nobody has decided yet."""


class StoredAnswers:
    """The window's answers, kept in the app's data folder (never in a project file) and read on each use."""

    how_to_allow = ("the app asks before it loads such a model; answer Yes when it asks, or turn on "
                    "Trust remote code for this backbone to be asked again")

    def __init__(self, path: Path | None = None) -> None:
        self._path = path

    @property
    def path(self) -> Path:
        return self._path or paths.data_dir() / "trusted_code.json"

    def _read(self) -> dict:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        answers = raw.get("answers") if isinstance(raw, dict) else None
        return answers if isinstance(answers, dict) else {}

    def answer(self, source: CodeSource) -> bool | None:
        entry = self._read().get(source.key)
        return entry.get("allowed") if isinstance(entry, dict) and isinstance(entry.get("allowed"), bool) else None

    def remember(self, source: CodeSource, allowed: bool) -> None:
        answers = self._read()
        answers[source.key] = {"repo": source.repo, "revision": source.revision, "allowed": allowed,
                               "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"version": 1, "answers": answers}, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)


class CommandLineGrant:
    """qarac-train: --trust-remote-code on the command line grants it; nothing remembered is consulted."""

    how_to_allow = "add --trust-remote-code to the command line, only if you trust that code"

    def __init__(self, granted: bool) -> None:
        self.granted = granted

    def answer(self, source: CodeSource) -> bool | None:
        return True if self.granted else None


_policy: CodePolicy = StoredAnswers()


def set_policy(policy: CodePolicy) -> None:
    """Who grants permission in this process (the CLI sets CommandLineGrant at start)."""
    global _policy
    _policy = policy


def policy() -> CodePolicy:
    return _policy


def remote_code_allowed(backbone: str, wanted: bool, source: str, local: bool, revision: str) -> bool:
    """The trust_remote_code to load with: True only when the project asks for it and the policy allows that
    source; a request nobody allowed raises CodeNotAllowed (the load then runs nothing)."""
    if not wanted:
        return False
    src = code_source(source, local, revision)
    verdict = _policy.answer(src)
    if verdict:
        return True
    what = "was refused" if verdict is False else "has not been allowed"
    raise CodeNotAllowed(f"backbones.{backbone}: the project sets trust_remote_code = true, which runs the Python "
                         f"code of {src.describe()} on this computer; that {what}, so the model was not loaded. "
                         f"To allow it, {_policy.how_to_allow}")


# ---------------------------------------------------------------------------------------------------------------
# package:<module> model packages


def _declared() -> dict[str, str]:
    from importlib.metadata import entry_points
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def model_packages() -> list[str]:
    """The names a project may use after package:, sorted."""
    return sorted(_declared())


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


def model_package_path(spec: str, root: Path) -> str:
    """The model folder a declared model package ships. Nothing is imported unless the name is declared in the
    qarac_gui.models entry-point group and it resolves to an installed package, not a file in the current folder
    or beside the project."""
    name = spec.removeprefix("package:").strip()
    declared = _declared()
    known = ", ".join(sorted(declared)) or "none are installed"
    if not name:
        raise CodeNotAllowed(f"model {spec!r}: name a model package after package: (installed: {known})")
    target = declared.get(name)
    if target is None:
        raise CodeNotAllowed(f"model {spec!r}: {name!r} is not an installed model package, so it was not "
                             f"imported (model packages: {known}); a package becomes one by declaring itself in "
                             f"the {ENTRY_POINT_GROUP!r} entry-point group")
    module_name, _, attr = target.partition(":")
    top = module_name.split(".")[0]
    try:
        spec_found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec_found = None
    if spec_found is None:
        raise CodeNotAllowed(f"model {spec!r}: the package {top!r} that provides it is declared but not "
                             f"importable; reinstall it (pip install {top.replace('_', '-')})")
    # The folder it would be imported from: a file or package placed in the current folder (first on sys.path
    # under `python -m`) or beside the project would shadow the installed package.
    places = [Path(p).parent for p in (spec_found.submodule_search_locations or [])]
    if spec_found.origin and spec_found.has_location and not places:
        places = [Path(spec_found.origin).parent]
    if not getattr(sys, "frozen", False):
        for place in places:
            for folder, where in ((Path.cwd(), "the current folder"), (root, "the project's folder")):
                if _same(place, folder):
                    raise CodeNotAllowed(f"model {spec!r}: {top!r} would be imported from {place}, {where}, "
                                         "instead of the installed package; rename or move that file, or start "
                                         "from another folder")
    try:
        module = importlib.import_module(module_name)
        folder = getattr(module, attr or "get_model_path")()
    except Exception as e:
        raise CodeNotAllowed(f"model {spec!r}: the model package {name!r} failed to give its folder "
                             f"({type(e).__name__}: {e})") from None
    return str(folder)
