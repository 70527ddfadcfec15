#!/bin/sh
# Remove qarac_gui as install.sh put it down: the app folder this script lives in (PREFIX/opt/qarac-gui), and the
# launchers, menu entry and icons listed in its manifest. Nothing else: the user's runs and settings
# (~/.local/share/qarac_gui), the dataset cache (~/.cache/qarac_gui) and the Hugging Face cache stay.
#
#   PREFIX/opt/qarac-gui/uninstall.sh [--quiet]
set -eu

APP="$(cd "$(dirname "$0")" && pwd)"
PREFIX="$(cd "$APP/../.." && pwd)"
SHARE="$PREFIX/share"
MARK="qarac-gui-install-manifest.txt"

refresh() {
    # Menus and icon themes notice the change on their own in most desktops; these make it immediate. An icon
    # cache is refreshed only where one exists: creating one would hide icons that later installs add without it.
    if command -v update-desktop-database >/dev/null 2>&1 && [ -d "$SHARE/applications" ]; then
        update-desktop-database -q "$SHARE/applications" 2>/dev/null || true
    fi
    hicolor="$SHARE/icons/hicolor"
    if [ -d "$hicolor" ]; then
        if [ -f "$hicolor/icon-theme.cache" ] && command -v gtk-update-icon-cache >/dev/null 2>&1; then
            gtk-update-icon-cache -q -t -f "$hicolor" 2>/dev/null || true
        else
            touch "$hicolor"
        fi
    fi
}

quiet=""
case "${1:-}" in
    --refresh-only) refresh; exit 0 ;;
    --quiet) quiet=1 ;;
    "") ;;
    *) echo "usage: $0 [--quiet]" >&2; exit 2 ;;
esac

# Refuse anything that does not look like our own install: this deletes a folder.
if [ "$(basename "$APP")" != "qarac-gui" ] || [ ! -f "$APP/$MARK" ] || [ ! -x "$APP/qarac-gui" ]; then
    echo "error: $APP is not a qarac-gui install made by install.sh; nothing removed" >&2
    exit 1
fi

while IFS= read -r path; do
    # Only files, and only under this prefix: a manifest line can never reach a user's data.
    case "$path" in "$PREFIX"/*) ;; *) continue ;; esac
    if [ -f "$path" ] || [ -L "$path" ]; then
        rm -f "$path"
    fi
done < "$APP/$MARK"

rm -rf "$APP"
refresh
[ -n "$quiet" ] || echo "Removed qarac_gui from $PREFIX (your runs and settings in ~/.local/share/qarac_gui are kept)"
