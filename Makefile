# Loupe: `make run` installs everything into .venv and starts the app on the bundled demo;
# `make test` installs and runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test pythons demo-model bench bench-all lint wheel icons bundle bundle-smoke install-desktop uninstall-desktop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[fit,test,cluster]'
	touch $(STAMP)

install: $(STAMP)

# Before Qt starts: the system libraries its xcb plugin needs (installed with root/sudo, else the apt-get line).
run: $(STAMP)
	$(BIN)/python packaging/check_display_libs.py
	$(BIN)/loupe

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

# The other claimed Pythons found here (3.10, 3.12, 3.13): a real `pip install .` into build/py3.X
# each, then analyze the demo clip, the offscreen window screenshot and the hostile corpus.
pythons:
	.ci/other-pythons

demo-model: $(STAMP)
	$(BIN)/python -m loupe_models.demo_seg --out resources/demo_segmentation.onnx

bench: $(STAMP)
	$(BIN)/python bench/analyze_fps.py

# Every benchmark in bench/ (start-up, pipeline efficiency, overlay cost, UI stall, live latency,
# GPU, memory soaks) in about 28 minutes (budget 40) on a 2-core CPU; the log goes to build/bench-<date>.txt.
bench-all: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check app models tests bench

# A wheel in dist/ (the test suite builds one too, in a temporary folder: tests/test_packaging.py).
wheel: $(STAMP)
	$(BIN)/python -m build --wheel --no-isolation --skip-dependency-check --outdir dist .

# Re-render resources/icons/loupe-<N>.png after editing resources/icons/loupe.svg (PNGs are committed).
icons: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python packaging/render_icons.py

# One-folder CPU bundle without torch: dist/loupe/loupe (CPU heavy: minutes; not part of `make test`).
bundle: $(STAMP)
	$(BIN)/python -m pip install --quiet 'pyinstaller>=6.10'
	@mkdir -p build/pyinstaller
	@start=$$(date +%s); \
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller packaging/loupe.spec \
	&& echo $$(( $$(date +%s) - start )) > build/pyinstaller/build_seconds \
	&& echo "bundle: dist/loupe/loupe built in $$(cat build/pyinstaller/build_seconds) s"

# Build the bundle, then start it offscreen, save a screenshot and check it (packaging/smoke_test.sh).
bundle-smoke: bundle
	packaging/smoke_test.sh

# Desktop entry + icons into ~/.local/share for this user (LOUPE_EXEC=/path/to/loupe to choose the
# program; default: loupe on PATH, else .venv/bin/loupe, else dist/loupe/loupe). Not run in CI.
install-desktop:
	packaging/install_desktop.sh

uninstall-desktop:
	packaging/install_desktop.sh --uninstall

clean:
	rm -rf $(VENV) build dist *.egg-info
