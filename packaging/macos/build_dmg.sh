#!/bin/sh
# Build dist/qarac-gui.app and a .dmg on macOS.  UNTESTED: written on Linux; nobody has run it on a Mac yet.
#
# Run from the repository root, in a clean build venv (see packaging/README.md, "macOS"):
#     python3 -m venv .build-venv
#     .build-venv/bin/pip install torch==2.13.0
#     .build-venv/bin/pip install ".[demo]" pyinstaller
#     sh packaging/macos/build_dmg.sh
set -eu

PY="${PYTHON:-.build-venv/bin/python}"
VERSION="$("$PY" -c 'import sys; sys.path.insert(0, "packaging"); import bundle_facts; print(bundle_facts.app_version())')"
ARCH="$(uname -m)"                                   # arm64 or x86_64: PyInstaller builds for the Python it runs in
ICONSET="build/qarac_gui.iconset"

# 1. The icon: PNGs at every size macOS asks for, drawn by Qt from the SVG, packed by Apple's iconutil.
"$PY" packaging/make_icons.py --iconset "$ICONSET"
iconutil -c icns "$ICONSET" -o packaging/macos/qarac_gui.icns

# 2. The app: the same spec as on Linux; on macOS it also writes the .app (its BUNDLE section).
"$PY" -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/qarac_gui.spec

# 3. Sign ad hoc so that Apple silicon runs it at all; for other people's Macs sign with a Developer ID and
#    notarise instead (codesign --options runtime -s "Developer ID Application: ..." then xcrun notarytool).
codesign --force --deep --sign - dist/qarac-gui.app

# 4. The disk image: the app next to a link to /Applications, so installing is a drag.
STAGE="build/dmg"
rm -rf "$STAGE" && mkdir -p "$STAGE"
cp -R dist/qarac-gui.app "$STAGE/"
ln -s /Applications "$STAGE/Applications"
DMG="dist/qarac-gui-$VERSION-macos-$ARCH.dmg"
rm -f "$DMG"
hdiutil create -volname "qarac_gui $VERSION" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
echo "built $DMG"
echo "check it: dist/qarac-gui.app/Contents/MacOS/qarac-gui --self-test"
