"""What the spec leaves out of the bundle after PyInstaller's analysis: files no installed app ever loads.

Imported by qarac_gui.spec (PyInstaller puts the spec's folder on sys.path only if we do; the spec does).
Entries are PyInstaller TOC tuples (destination, source, typecode); destinations use forward slashes on Linux
and macOS, backslashes on Windows, so every test normalises first.
"""

from __future__ import annotations

import sys
from pathlib import PurePosixPath

# torch's wheel carries its C++ headers, CMake files, its C++ test programs and test-only libraries. Not
# torch/testing: importing torch imports parts of it. Not torch/bin/torch_shm_manager: importing torch checks
# that it exists (it serves shared memory to worker processes).
TORCH_UNUSED = ("torch/include/", "torch/test/", "torch/bin/", "torch/share/")
TORCH_KEEP = ("torch/bin/torch_shm_manager",)
TORCH_TEST_LIBS = ("libjitbackend_test", "libtorchbind_test", "libbackend_with_compiler", "libaoti_custom_ops")

# Qt plugins for platforms a desktop app is not run on (framebuffer, VNC, EGL full-screen, touch over the network),
# and the GTK3 theme: it needs the system's GTK, and loading that against the bundle's own older or newer cairo and
# pango is a crash waiting to happen; Qt falls back to its own Fusion-like style, and the XDG portal theme remains.
QT_UNUSED_PLUGINS = (
    "platforms/libqeglfs", "platforms/libqlinuxfb", "platforms/libqvnc", "platforms/libqvkkhrdisplay",
    "platforms/libqminimalegl", "egldeviceintegrations/", "generic/", "platformthemes/libqgtk3",
    "qmltooling/", "designer/", "sqldrivers/", "multimedia/", "position/", "sensors/", "webview/",
)

# Qt translations are only read when the app installs a QTranslator, which qarac_gui does not.
QT_UNUSED_DATA = ("translations/", "qml/")


def _posix(dest: str) -> str:
    return dest.replace("\\", "/")


def unused(dest: str) -> bool:
    """True for a collected file that the app never opens (by its destination in the bundle)."""
    dest = _posix(dest)
    if dest.startswith(TORCH_UNUSED):
        return dest not in TORCH_KEEP
    name = PurePosixPath(dest).name
    if dest.startswith("torch/lib/") and name.startswith(TORCH_TEST_LIBS):
        return True
    if dest.startswith("PySide6/Qt/plugins/"):
        return dest.removeprefix("PySide6/Qt/plugins/").startswith(QT_UNUSED_PLUGINS)
    if dest.startswith("PySide6/Qt/"):
        return dest.removeprefix("PySide6/Qt/").startswith(QT_UNUSED_DATA)
    return False


def _prunable(entry: tuple) -> bool:
    """A shared library that is loaded only because another binary links it (never by path, never by ctypes)."""
    dest, source, typecode = entry
    dest = _posix(dest)
    if typecode != "BINARY" or PurePosixPath(dest).name.startswith("libpython"):
        return False
    in_qt = dest.startswith("PySide6/Qt/lib/")
    from_system = "/" not in dest and not any(part in source for part in ("site-packages", "dist-packages"))
    return in_qt or from_system


def unlinked_libraries(binaries: list[tuple]) -> set[str]:
    """Destinations of libraries that no kept binary links any more (Linux only).

    PyInstaller adds each plugin's libraries to the bundle, so dropping a plugin leaves its libraries behind:
    the GTK theme's cairo and pango, the VNC plugin's QtNetwork. A CUDA runtime found on the build machine
    through a ctypes call in torch's compiler also lands here, in a CPU build that never loads it.
    """
    if not sys.platform.startswith("linux"):
        return set()
    from PyInstaller.depend.bindepend import get_imports

    candidates = {_posix(entry[0]): entry for entry in binaries if _prunable(entry)}
    linked: set[str] = set()
    for dest, source, _typecode in binaries:
        if _posix(dest) in candidates:
            continue
        # ldd lists the whole chain of libraries, not just the direct ones, so one pass is the closure.
        linked.update(PurePosixPath(name).name for name, _path in get_imports(source))
    return {dest for dest in candidates if PurePosixPath(dest).name not in linked}


def prune(binaries: list[tuple], datas: list[tuple]) -> tuple[list[tuple], list[tuple], list[str]]:
    """(kept binaries, kept datas, destinations dropped) for the spec to hand to COLLECT."""
    dropped = [_posix(e[0]) for e in binaries + datas if unused(e[0])]
    binaries = [e for e in binaries if not unused(e[0])]
    datas = [e for e in datas if not unused(e[0])]
    unlinked = unlinked_libraries(binaries)
    dropped += sorted(unlinked)
    binaries = [e for e in binaries if _posix(e[0]) not in unlinked]
    return binaries, datas, dropped
