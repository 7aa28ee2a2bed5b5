#!/bin/sh
# Install (or remove) Loupe's desktop entry and icons for the current user, so Loupe shows up in
# the application menu and in "Open with" for videos, images and DICOM files.
#
#   packaging/install_desktop.sh                 # or: make install-desktop
#   packaging/install_desktop.sh --uninstall     # or: make uninstall-desktop
#   LOUPE_EXEC=/opt/loupe/loupe packaging/install_desktop.sh
#
# Files go under ${XDG_DATA_HOME:-~/.local/share} (or --prefix DIR):
#   applications/loupe.desktop                 (Exec= set to the absolute path of the program)
#   icons/hicolor/<N>x<N>/apps/loupe.png       (N = 16 32 48 64 128 256)
#   icons/hicolor/scalable/apps/loupe.svg
# The program is $LOUPE_EXEC, else `loupe` on PATH, else .venv/bin/loupe, else dist/loupe/loupe.
# Nothing here needs root. Not run in CI.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${XDG_DATA_HOME:-$HOME/.local/share}
action=install
while [ $# -gt 0 ]; do
    case "$1" in
        --uninstall) action=uninstall ;;
        --prefix) prefix=$2; shift ;;
        --prefix=*) prefix=${1#--prefix=} ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install_desktop: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
sizes="16 32 48 64 128 256"
apps="$prefix/applications"
icons="$prefix/icons/hicolor"

refresh() {  # best effort: menus and icon themes pick the files up without a re-login
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps" || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t -f "$icons" || true
}

if [ "$action" = uninstall ]; then
    rm -f "$apps/loupe.desktop" "$icons/scalable/apps/loupe.svg"
    for n in $sizes; do rm -f "$icons/${n}x${n}/apps/loupe.png"; done
    refresh
    echo "install_desktop: removed Loupe's desktop entry and icons from $prefix"
    exit 0
fi

exe=${LOUPE_EXEC:-}
if [ -z "$exe" ]; then
    for candidate in "$(command -v loupe 2>/dev/null || true)" "$here/.venv/bin/loupe" "$here/dist/loupe/loupe"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then exe=$candidate; break; fi
    done
fi
[ -n "$exe" ] && [ -x "$exe" ] || {
    echo "install_desktop: no loupe program found; pip install Loupe, run make bundle, or set LOUPE_EXEC" >&2
    exit 1
}
case "$exe" in /*) ;; *) exe="$(cd "$(dirname "$exe")" && pwd)/$(basename "$exe")" ;; esac
case "$exe" in *" "*) exe_q="\"$exe\"" ;; *) exe_q=$exe ;; esac

mkdir -p "$apps" "$icons/scalable/apps"
sed -e "s|^Exec=loupe |Exec=$exe_q |" -e "s|^TryExec=loupe\$|TryExec=$exe|" \
    "$here/packaging/loupe.desktop" > "$apps/loupe.desktop"
chmod 644 "$apps/loupe.desktop"
for n in $sizes; do
    mkdir -p "$icons/${n}x${n}/apps"
    cp "$here/resources/icons/loupe-$n.png" "$icons/${n}x${n}/apps/loupe.png"
done
cp "$here/resources/icons/loupe.svg" "$icons/scalable/apps/loupe.svg"
if command -v desktop-file-validate >/dev/null 2>&1; then
    desktop-file-validate "$apps/loupe.desktop" || true
fi
refresh
echo "install_desktop: installed $apps/loupe.desktop (Exec=$exe) and icons under $icons"
