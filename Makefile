# Loupe: `make run` installs everything into .venv and starts the app on the bundled demo;
# `make test` installs and runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test demo-model bench lint bundle clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[fit,test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/loupe

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

demo-model: $(STAMP)
	$(BIN)/python -m loupe_models.demo_seg --out resources/demo_segmentation.onnx

bench: $(STAMP)
	$(BIN)/python bench/analyze_fps.py

lint: $(STAMP)
	$(BIN)/ruff check app models tests bench

bundle: $(STAMP)
	$(BIN)/python -m pip install --quiet pyinstaller
	$(BIN)/pyinstaller --noconfirm --distpath dist --workpath build/pyinstaller packaging/loupe.spec

clean:
	rm -rf $(VENV) build dist *.egg-info
