"""The `mamoru` command on a real registry, as an operator runs it (a real process).

Expected failures end in one line on stderr and exit 2, never a traceback;
passwords come from the environment where a script has no terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.registries import OBAMA, PASSWORD, Registry

pytestmark = pytest.mark.cli


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


CONTROL = ("\x1b", "\x07", "\x9b", "\u202e")


def test_typed_control_characters_are_refused_in_one_line(registry: Registry) -> None:
    entry_id = registry.register(OBAMA)
    refused = mamoru(registry.data_dir, "correct", entry_id, "--as", "mgr1", "--reason", "typo",
                     "--features", "cap\x1b]0;owned\x07")
    assert_one_line_error(refused, "features: contains a control character (U+001B)")
    entry = registry.ctx.repo.entry(entry_id)
    assert entry is not None and entry.revision == 1


def test_stored_text_is_printed_escaped_never_obeyed(registry: Registry) -> None:
    """Rows stored before the rule (or by any other way) cannot drive an admin's terminal."""
    entry_id = registry.register(OBAMA)
    entry = registry.ctx.repo.entry(entry_id)
    assert entry is not None
    hostile = "cap\x1b]0;owned\x07 \x9b2J \u202egnp.exe\r\n日本語\tend"
    with registry.ctx.repo.unit_of_work():
        registry.ctx.repo.update_entry(replace(entry, features=hostile))  # past every rule
    shown = mamoru(registry.data_dir, "watchlist", "show", entry_id, "--as", "mgr1")
    assert shown.returncode == 0, shown.stderr
    assert not any(c in shown.stdout for c in (*CONTROL, "\r"))
    assert "cap\\u001b]0;owned\\u0007 \\u009b2J \\u202egnp.exe\\u000d" in shown.stdout
    assert "日本語\tend" in shown.stdout  # newline and tab are kept; Japanese untouched
    as_json = mamoru(registry.data_dir, "watchlist", "show", entry_id, "--as", "mgr1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert not any(c in as_json.stdout for c in CONTROL)
    assert json.loads(as_json.stdout)["features"] == hostile  # still exact for a script


def test_stores_are_added_and_named_on_users_and_boxes_unknown_ones_in_one_line(
        registry: Registry) -> None:
    """Issue 15, item 1: `mamoru store add/list`, `user add --store`, `device add --store`."""
    data_dir = registry.data_dir
    added = mamoru(data_dir, "store", "add", "store-042", "--name", "梅田店", "--as", "admin")
    assert added.returncode == 0, added.stderr
    listed = mamoru(data_dir, "store", "list", "--json", "--as", "admin")
    assert {"store_id": "store-042", "name": "梅田店"} in json.loads(listed.stdout)
    clerk = mamoru(data_dir, "user", "add", "umeda-clerk", "--role", "staff", "--store",
                   "store-042", "--as", "admin", MAMORU_NEW_PASSWORD=PASSWORD)
    assert clerk.returncode == 0, clerk.stderr
    box = mamoru(data_dir, "device", "add", "umeda-door", "--store", "store-042", "--as",
                 "admin")
    assert box.returncode == 0, box.stderr
    boxes = json.loads(mamoru(data_dir, "device", "list", "--json", "--as", "admin").stdout)
    assert [b["store_id"] for b in boxes if b["name"] == "umeda-door"] == ["store-042"]
    assert_one_line_error(mamoru(data_dir, "device", "add", "kobe-door", "--store", "kobe",
                                 "--as", "admin"), "no store kobe")
    assert_one_line_error(mamoru(data_dir, "user", "add", "kobe-clerk", "--role", "staff",
                                 "--store", "kobe", "--as", "admin",
                                 MAMORU_NEW_PASSWORD=PASSWORD), "no store kobe")
