"""Render the app icon (resources/icons/qarac_gui.svg) to the bitmaps that installers need.

    python packaging/make_icons.py                    PNGs in resources/icons/png/, packaging/windows/qarac_gui.ico
    python packaging/make_icons.py --iconset DIR      also a macOS DIR.iconset for iconutil (see packaging/macos)

Qt's own SVG renderer draws them offscreen, so no display and no image tool is needed: only PySide6, which the
app depends on anyway. The outputs are committed; run this again only when the SVG changes.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "qarac_gui.svg"
PNG_DIR = ROOT / "resources" / "icons" / "png"
ICO = ROOT / "packaging" / "windows" / "qarac_gui.ico"
SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)      # what Windows picks from for the taskbar, Explorer and shortcuts
# macOS .iconset names: each point size at 1x and 2x.
ICONSET = {f"icon_{n}x{n}.png": n for n in (16, 32, 128, 256, 512)} | {
    f"icon_{n}x{n}@2x.png": 2 * n for n in (16, 32, 128, 256, 512)}


def png_name(size: int) -> str:
    return f"qarac-gui-{size}.png"


def render(renderer, size: int) -> bytes:
    """PNG bytes of the SVG drawn at size x size on a transparent background."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QImage, QPainter

    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise RuntimeError(f"could not encode the {size} px icon as PNG")
    buffer.close()
    return bytes(data)


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico holding PNG images (allowed since Vista), one per size; 256 is written as 0 by the format."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = len(header) + 16 * len(pngs)
    entries, blobs = b"", b""
    for size, png in sorted(pngs.items()):
        side = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(png), offset + len(blobs))
        blobs += png
    return header + entries + blobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iconset", type=Path, help="also write a macOS .iconset folder here (for iconutil)")
    args = parser.parse_args(argv)

    if not os.environ.get("QT_QPA_PLATFORM"):      # an empty value counts as unset too
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841 (the renderer needs one)
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"error: {SVG} is not an SVG that Qt can draw", file=sys.stderr)
        return 1

    PNG_DIR.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        (PNG_DIR / png_name(size)).write_bytes(render(renderer, size))
    ICO.parent.mkdir(parents=True, exist_ok=True)
    ICO.write_bytes(ico_bytes({size: render(renderer, size) for size in ICO_SIZES}))
    written = [str(PNG_DIR.relative_to(ROOT)), str(ICO.relative_to(ROOT))]
    if args.iconset:
        args.iconset.mkdir(parents=True, exist_ok=True)
        for name, size in ICONSET.items():
            (args.iconset / name).write_bytes(render(renderer, size))
        written.append(str(args.iconset))
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
