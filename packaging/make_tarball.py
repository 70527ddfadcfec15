"""The portable archive: the bundle plus install.sh / uninstall.sh for a per-user install without root.

    qarac-gui-<version>-linux-<arch>/
        install.sh  uninstall.sh  README.txt
        qarac-gui/                      the PyInstaller folder (qarac-gui, qarac-train, _internal/)
        share/applications/qarac-gui.desktop
        share/icons/hicolor/<N>x<N>/apps/qarac-gui.png, scalable/apps/qarac-gui.svg
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from bundle_facts import NAME, ROOT

HERE = Path(__file__).resolve().parent
ICONS = ROOT / "resources" / "icons"

README = """qarac_gui {version}, a self-contained build for Linux ({arch}).

Install for yourself (no root):   ./install.sh            (or ./install.sh --prefix DIR)
Check the install:                ~/.local/bin/qarac-gui --self-test
Remove it again:                  ~/.local/opt/qarac-gui/uninstall.sh

Or run it in place, without installing:  ./qarac-gui/qarac-gui   and   ./qarac-gui/qarac-train --help

Your runs and settings live in ~/.local/share/qarac_gui and the dataset cache in ~/.cache/qarac_gui;
uninstalling leaves both, and the Hugging Face cache, alone.
"""


def members(bundle: Path) -> list[tuple[Path, str]]:
    """(file on disk, name in the archive below the top folder) for everything but the generated README."""
    items = [(HERE / "linux" / "install.sh", "install.sh"), (HERE / "linux" / "uninstall.sh", "uninstall.sh"),
             (ROOT / "resources" / "qarac-gui.desktop", "share/applications/qarac-gui.desktop"),
             (ICONS / "qarac_gui.svg", "share/icons/hicolor/scalable/apps/qarac-gui.svg")]
    for png in sorted((ICONS / "png").glob("qarac-gui-*.png")):
        size = png.stem.rsplit("-", 1)[1]
        items.append((png, f"share/icons/hicolor/{size}x{size}/apps/qarac-gui.png"))
    items.append((bundle, NAME))
    return items


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Who built it is no business of whoever unpacks it; keep modes, drop group/other write.
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o755 if info.name.endswith(".sh") else info.mode & 0o755
    return info


def build_tarball(bundle: Path, version: str, arch: str, out_dir: Path, level: int = 6) -> Path:
    top = f"{NAME}-{version}-linux-{arch}"
    out = out_dir / f"{top}.tar.gz"
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:gz", compresslevel=level) as tar:
        for source, name in members(bundle):
            tar.add(source, arcname=f"{top}/{name}", filter=_owned_by_root)
        data = README.format(version=version, arch=arch).encode()
        info = _owned_by_root(tarfile.TarInfo(f"{top}/README.txt"))
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    partial.replace(out)
    return out
