"""Where things live: user data and cache folders (platformdirs) and the bundled resources."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "qarac_gui"


def data_dir() -> Path:
    """Runs and app data; QARAC_GUI_DATA overrides (tests, portable installs)."""
    override = os.environ.get("QARAC_GUI_DATA")
    if override:
        return Path(override)
    from platformdirs import user_data_dir
    return Path(user_data_dir(APP, appauthor=False))


def cache_dir() -> Path:
    """Tokenised-dataset cache; QARAC_GUI_CACHE overrides. Models stay in the shared Hugging Face cache."""
    override = os.environ.get("QARAC_GUI_CACHE")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir(APP, appauthor=False))


def runs_dir() -> Path:
    return data_dir() / "runs"


def _shipped(folder: str, bundle_first: bool, holds) -> Path:
    """The first of the package's own copy of a shipped folder, the bundle's and the checkout's that `holds` accepts
    (the last one when none does)."""
    here = Path(__file__).resolve().parent.parent            # the qarac_gui package
    candidates = [here / folder, here.parent / folder]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.insert(0 if bundle_first else 1, Path(bundle) / folder)
    return next((base for base in candidates if holds(base)), candidates[-1])


def resource_path(*parts: str) -> Path:
    """A file under resources/, in a source checkout, an installed wheel or a PyInstaller bundle alike."""
    return _shipped("resources", True, Path.is_dir).joinpath(*parts)


def docs_path(*parts: str) -> Path:
    """A file under docs/ (the Markdown pages the Help menu shows): installed wheel, PyInstaller bundle or checkout.

    The package's own copy comes first: in an installed wheel the checkout's place (the package's parent) is
    site-packages, where another project's docs/ folder may lie.
    """
    return _shipped("docs", False, lambda base: any(base.glob("*.md"))).joinpath(*parts)
