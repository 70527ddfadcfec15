#!/bin/sh
# Install qarac_gui from this unpacked archive, for one user, no root needed.
#
#   ./install.sh                  the app in ~/.local/opt/qarac-gui, launchers in ~/.local/bin, menu entry and
#                                 icons under ~/.local/share
#   ./install.sh --prefix DIR     the same under DIR (DIR/opt/qarac-gui, DIR/bin, DIR/share)
#
# Running it again replaces an earlier install. DIR/opt/qarac-gui/uninstall.sh removes exactly what this put
# down; the user's runs and settings (~/.local/share/qarac_gui), the dataset cache (~/.cache/qarac_gui) and the
# Hugging Face cache are not the app's files and stay.
set -eu

usage() { echo "usage: $0 [--prefix DIR]" >&2; exit 2; }

PREFIX="${HOME}/.local"
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || usage; PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) usage ;;
    esac
done
case "$PREFIX" in /*) ;; *) PREFIX="$(pwd)/$PREFIX" ;; esac

HERE="$(cd "$(dirname "$0")" && pwd)"
APP="$PREFIX/opt/qarac-gui"
BIN="$PREFIX/bin"
SHARE="$PREFIX/share"
MARK="qarac-gui-install-manifest.txt"      # also tells uninstall.sh that the folder is ours to delete

[ -x "$HERE/qarac-gui/qarac-gui" ] || { echo "error: $HERE/qarac-gui/qarac-gui is missing: unpack the whole archive" >&2; exit 1; }

if [ -e "$APP" ]; then
    if [ -f "$APP/$MARK" ]; then
        echo "Replacing the earlier install in $APP"
        "$APP/uninstall.sh" --quiet
    else
        echo "error: $APP exists and was not installed by this script; move it away first" >&2
        exit 1
    fi
fi

mkdir -p "$PREFIX/opt" "$BIN" "$SHARE/applications"
# Copy into a temporary name first, so an interrupted copy never looks like an install.
rm -rf "$APP.partial"
cp -R "$HERE/qarac-gui" "$APP.partial"
cp "$HERE/uninstall.sh" "$APP.partial/uninstall.sh"
chmod 755 "$APP.partial/uninstall.sh"
mv "$APP.partial" "$APP"

manifest="$APP/$MARK"
: > "$manifest"
for tool in qarac-gui qarac-train; do
    # A script, not a symlink: the bundle finds its libraries next to the real executable either way, but a
    # script also survives the tools that copy ~/.local/bin around.
    printf '#!/bin/sh\n# installed by qarac-gui install.sh\nexec "%s/%s" "$@"\n' "$APP" "$tool" > "$BIN/$tool"
    chmod 755 "$BIN/$tool"
    echo "$BIN/$tool" >> "$manifest"
done

# The menu entry names the launcher by its full path: ~/.local/bin is often not on a desktop session's PATH.
desktop="$SHARE/applications/qarac-gui.desktop"
sed -e "s|^Exec=qarac-gui|Exec=$BIN/qarac-gui|" -e "s|^TryExec=qarac-gui|TryExec=$BIN/qarac-gui|" \
    "$HERE/share/applications/qarac-gui.desktop" > "$desktop"
echo "$desktop" >> "$manifest"

for icon in "$HERE"/share/icons/hicolor/*/apps/*; do
    target="$SHARE/icons/hicolor/${icon#"$HERE/share/icons/hicolor/"}"
    mkdir -p "$(dirname "$target")"
    cp "$icon" "$target"
    echo "$target" >> "$manifest"
done

"$APP/uninstall.sh" --refresh-only

echo "Installed qarac_gui in $APP"
echo "  launchers: $BIN/qarac-gui, $BIN/qarac-train"
echo "  menu entry: $desktop"
case ":$PATH:" in *":$BIN:"*) ;; *) echo "  note: $BIN is not on PATH; add it to run qarac-gui from a terminal" ;; esac
echo "  check it:  $BIN/qarac-gui --self-test"
echo "  remove it: $APP/uninstall.sh"
