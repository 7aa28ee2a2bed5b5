#!/bin/sh
# Smoke test of the PyInstaller bundle (`make bundle-smoke` builds it first):
#   * dist/loupe/loupe --version and `sysinfo` run (no Python from outside the bundle);
#   * the bundle starts offscreen on the demo, plays 10 frames and saves a screenshot that is
#     a real picture (not missing, not tiny, not one flat colour);
#   * torch and the CUDA/TensorRT provider libraries are not in the bundle;
#   * prints the bundle size (du -sh) and the build time recorded by `make bundle`.
# Usage: packaging/smoke_test.sh [BUNDLE_DIR]   (default dist/loupe); exit status 0 = pass.
set -eu
cd "$(dirname "$0")/.."
BUNDLE=${1:-dist/loupe}
EXE="$BUNDLE/loupe"
OUT=${SMOKE_OUT:-build/smoke}
PY=${PYTHON:-.venv/bin/python}
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

[ -x "$EXE" ] || fail "$EXE not found: run make bundle first"
mkdir -p "$OUT"
rm -f "$OUT/screenshot.png"

# 1. it starts, knows its version, and reports what it runs on
expected="loupe $(sed -n 's/^__version__ = "\(.*\)"/\1/p' app/__init__.py)"
version=$("$EXE" --version) || fail "$EXE --version exited with $?"
[ "$version" = "$expected" ] || fail "--version says '$version', expected '$expected'"
echo "smoke: $version"
"$EXE" sysinfo > "$OUT/sysinfo.txt" || fail "loupe sysinfo exited with $?"
sed 's/^/smoke:   /' "$OUT/sysinfo.txt"
grep -q "^DICOM decoders:.*JPEG Baseline \[" "$OUT/sysinfo.txt" || fail "no JPEG decoder for DICOM in the bundle"
grep -q "^DICOM decoders:.*JPEG 2000 \[" "$OUT/sysinfo.txt" || fail "no JPEG 2000 decoder for DICOM in the bundle"
grep -q "entry points: libjpeg, openjpeg" "$OUT/sysinfo.txt" || fail "pylibjpeg plugin entry points are missing"
grep -q "^torch (fitting):.*not in the app bundle" "$OUT/sysinfo.txt" || fail "torch is visible inside the bundle"

# 2. nothing of torch or the GPU providers went in
if find "$BUNDLE" \( -iname 'torch' -o -iname 'libtorch*' -o -name 'libonnxruntime_providers_cuda.so' \
        -o -name 'libonnxruntime_providers_tensorrt.so' -o -name 'libcudnn*' \) | grep -q .; then
    find "$BUNDLE" \( -iname 'torch' -o -iname 'libtorch*' -o -name 'libonnxruntime_providers_*' \) >&2
    fail "torch or a GPU provider library is in the bundle"
fi

# 3. it opens the window on the demo, plays frames and saves a screenshot
start=$(date +%s)
QT_QPA_PLATFORM=offscreen timeout 180 "$EXE" --screenshot "$OUT/screenshot.png" --frames 10 \
    > "$OUT/run.log" 2>&1 || { cat "$OUT/run.log" >&2; fail "the bundle exited with $?"; }
run_s=$(( $(date +%s) - start ))
sed 's/^/smoke:   /' "$OUT/run.log"
[ -f "$OUT/screenshot.png" ] || fail "no screenshot was saved"
bytes=$(wc -c < "$OUT/screenshot.png")
[ "$bytes" -gt 20000 ] || fail "screenshot is only $bytes bytes"
if [ -x "$PY" ]; then  # optional pixel check with the build environment's Python
    QT_QPA_PLATFORM=offscreen "$PY" - "$OUT/screenshot.png" <<'EOF' || fail "the screenshot looks blank"
import sys
from PySide6.QtGui import QImage
img = QImage(sys.argv[1])
assert not img.isNull() and img.width() >= 800 and img.height() >= 500, (img.width(), img.height())
colours = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
assert len(colours) > 200, f"only {len(colours)} colours"
print(f"smoke: screenshot {img.width()}x{img.height()}, {len(colours)} sampled colours")
EOF
fi

# 4. numbers for the report
size=$(du -sh "$BUNDLE" | cut -f1)
build_s=$(cat build/pyinstaller/build_seconds 2>/dev/null || echo "?")
echo "smoke: PASS  bundle $BUNDLE: $size  build: ${build_s} s  start+10 frames+screenshot: ${run_s} s  screenshot: $OUT/screenshot.png ($bytes bytes)"
