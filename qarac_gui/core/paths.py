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


def resource_path(*parts: str) -> Path:
    """A file under resources/, in a source checkout, an installed wheel or a PyInstaller bundle alike."""
    here = Path(__file__).resolve().parent.parent            # the qarac_gui package
    candidates = [here / "resources", here.parent / "resources"]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.insert(0, Path(bundle) / "resources")
    for base in candidates:
        if base.is_dir():
            return base.joinpath(*parts)
    return candidates[-1].joinpath(*parts)


def docs_path(*parts: str) -> Path:
    """A file under docs/ (the Markdown pages the Help menu shows): installed wheel, PyInstaller bundle or checkout.

    The package's own copy comes first: in an installed wheel the checkout's place (the package's parent) is
    site-packages, where another project's docs/ folder may lie.
    """
    here = Path(__file__).resolve().parent.parent            # the qarac_gui package
    candidates = [here / "docs", here.parent / "docs"]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.insert(1, Path(bundle) / "docs")
    for base in candidates:
        if any(base.glob("*.md")):
            return base.joinpath(*parts)
    return candidates[-1].joinpath(*parts)
