# The two set-up commands of the README:
#   make demo   installs everything into .venv and runs the main job
#   make test   installs everything into .venv and runs the test suite
# Both work on a fresh machine with nothing installed by hand.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MAMORU_CACHE_DIR ?= $(CURDIR)/.cache
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test install models face-data clean

# insightface is used for its alignment and SCRFD decoder only; its wheel pins
# opencv-python (GUI build), which clashes with opencv-python-headless, so it is
# installed without dependencies (the ones it needs are ours).
$(BIN)/mamoru: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps 'insightface==2.1'
	touch $@

install: $(BIN)/mamoru

models: install
	$(BIN)/mamoru models fetch --pack yunet-sface
	$(BIN)/mamoru models fetch --pack scrfd-mbf --accept-licence

face-data: install
	$(BIN)/python -m mamoru.face_data

demo: install
	$(BIN)/mamoru models fetch
	$(BIN)/mamoru demo

test: models face-data
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .cache
