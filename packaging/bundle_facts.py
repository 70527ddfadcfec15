"""Facts about the project and a built bundle that the packages are labelled with: version, architecture, torch."""

from __future__ import annotations

import ast
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "qarac-gui"


def app_version() -> str:
    """qarac_gui.__version__ of the checkout being packaged, read the way hatch reads it for the wheel (from the
    source file, so an older installed copy of qarac_gui cannot answer instead)."""
    tree = ast.parse((ROOT / "qarac_gui" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("qarac_gui/__init__.py sets no __version__")


def debian_version(version: str) -> str:
    """A PEP 440 version in Debian's order: pre-releases sort before the release with '~' (1.0rc1 -> 1.0~rc1)."""
    return re.sub(r"\.?(a|b|rc|dev)(\d*)", r"~\1\2", version.replace("-", "."))


def machine() -> str:
    """The CPU name used in the archive's file name: x86_64, aarch64."""
    return platform.machine() or "unknown"


def internal_dir(bundle: Path) -> Path:
    """Where PyInstaller 6 puts everything but the executables (older versions: the folder itself)."""
    inner = bundle / "_internal"
    return inner if inner.is_dir() else bundle


def torch_build(bundle: Path) -> str:
    """'2.13.0+cpu (CPU only)' or '2.13.0+cu128 (CUDA 12.8)': read from the files in the bundle, not the build env."""
    inner = internal_dir(bundle)
    dist_infos = sorted(inner.glob("torch-*.dist-info"))
    if not dist_infos:
        return "no torch in the bundle"
    version = dist_infos[0].name.removeprefix("torch-").removesuffix(".dist-info")
    cuda = None
    version_py = inner / "torch" / "version.py"
    if version_py.is_file():
        found = re.search(r"^cuda\s*(?::[^=]*)?=\s*'([^']+)'", version_py.read_text(), re.MULTILINE)
        cuda = found.group(1) if found else None
    has_cuda_lib = any((inner / "torch" / "lib").glob("libtorch_cuda*"))
    if cuda or has_cuda_lib:
        return f"{version} (CUDA {cuda or 'libraries present'})"
    return f"{version} (CPU only)"


def tree_size(path: Path) -> int:
    """Bytes in the files under path, each file once (symlinks not followed)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            item = Path(folder, name)
            if not item.is_symlink():
                total += item.stat().st_size
    return total


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"
