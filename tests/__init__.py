"""mamoru's test suite: real models, real face images, real files."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout: cwd of every `python -m mamoru` run
