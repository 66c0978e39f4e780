"""The `mamoru` command on a real registry, as an operator runs it (a real process).

Expected failures end in one line on stderr and exit 2, never a traceback;
passwords come from the environment where a script has no terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.registry.conftest import PASSWORD, Registry


def mamoru(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", "MAMORU_DATA_DIR": str(data_dir),
                "MAMORU_PASSWORD": PASSWORD, **env}
    return subprocess.run([sys.executable, "-m", "mamoru", *args], env=full_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0], result.stderr


def test_registry_init_takes_the_admin_password_from_the_environment(tmp_path: Path) -> None:
    """Like `user add`: MAMORU_NEW_PASSWORD, so an installer script needs no terminal."""
    data_dir = tmp_path / "data"
    made = mamoru(data_dir, "registry", "init", "--admin", "boss",
                  MAMORU_NEW_PASSWORD="a long new password")
    assert made.returncode == 0, made.stderr
    assert "Aborted" not in made.stderr + made.stdout
    listed = mamoru(data_dir, "user", "list", "--as", "boss", "--json",
                    MAMORU_PASSWORD="a long new password")
    assert listed.returncode == 0, listed.stderr
    assert '"boss"' in listed.stdout
    # MAMORU_PASSWORD is the caller's own password, never the one being set for someone.
    other = mamoru(tmp_path / "other", "registry", "init", MAMORU_PASSWORD="a long new password")
    assert other.returncode != 0
    assert not (tmp_path / "other" / "registry.db").exists()


def test_joint_use_import_and_receipt_of_a_missing_file_say_so_in_one_line(
        registry: Registry, tmp_path: Path) -> None:
    missing = tmp_path / "missing.bundle"
    for command in ("import", "receipt"):
        assert_one_line_error(mamoru(registry.data_dir, "joint-use", command, str(missing),
                                     "--as", "admin"), f"{missing}: no such file")
    assert_one_line_error(mamoru(registry.data_dir, "joint-use", "import", str(tmp_path),
                                 "--as", "admin"), "not a file")
