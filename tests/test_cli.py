"""The `mamoru` command as a new user runs it: real process, real models, real photos.

Expected failures must end in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mamoru.settings import MamoruSettings

pytestmark = pytest.mark.cli

MAMORU = [sys.executable, "-m", "mamoru"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [*MAMORU, *args], capture_output=True, text=True, env=full_env, timeout=120, check=False
    )


def assert_clean_user_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


@pytest.mark.parametrize("pack", ["yunet-sface", "scrfd-mbf"])
def test_compare_says_same_for_one_person_and_different_for_two(face_data: Path, pack: str) -> None:
    photos = face_data / "face_recognition"
    same = run("faces", "compare", str(photos / "obama.jpg"), str(photos / "obama3.jpg"),
               "--pack", pack, "--accept-licence", "--json")
    assert same.returncode == 0, same.stderr
    payload = json.loads(same.stdout)
    assert payload["verdict"] == "same"
    assert payload["similarity"] >= payload["threshold"]
    assert payload["engine"]["pack"] == pack
    assert payload["engine"]["licence"]  # the licence is shown wherever the pack is
    different = run("faces", "compare", str(photos / "obama.jpg"), str(photos / "biden.jpg"),
                    "--pack", pack, "--accept-licence")
    assert different.returncode == 0, different.stderr
    assert different.stdout.strip().splitlines()[-1].startswith("different: similarity")


def test_compare_calls_a_tiny_face_unusable(face_data: Path, tmp_path: Path) -> None:
    import cv2

    from mamoru.images import read_image

    big = read_image(face_data / "face_recognition/obama.jpg")
    tiny = cv2.resize(big, None, fx=0.08, fy=0.08, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "tiny.png"), tiny)
    result = run("faces", "compare", str(face_data / "face_recognition/obama2.jpg"),
                 str(tmp_path / "tiny.png"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "unusable"
    assert "too small" in payload["reason"]


def test_detect_lists_every_face_with_quality_reasons(face_data: Path) -> None:
    result = run("faces", "detect", str(face_data / "insightface/t1.jpg"), "--json")
    assert result.returncode == 0, result.stderr
    faces = json.loads(result.stdout)["images"][0]["faces"]
    assert len(faces) == 6
    for face in faces:
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5
        assert set(face["quality"]) >= {"passed", "reasons", "face_px", "sharpness", "yaw_deg"}
    assert any(not f["quality"]["passed"] and f["quality"]["reasons"] for f in faces)


def test_an_unreadable_file_is_a_one_line_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("this is not a picture")
    assert_clean_user_error(run("faces", "detect", str(bogus)), "not a readable image")
    assert_clean_user_error(run("faces", "detect", str(tmp_path / "absent.jpg")), "no such file")


def test_a_picture_without_a_face_is_a_one_line_error(face_data: Path) -> None:
    mountain = face_data / "pyfeat/free-mountain-vector-01.jpg"
    result = run("faces", "compare", str(mountain), str(face_data / "face_recognition/obama.jpg"))
    assert_clean_user_error(result, "no face found")


def test_a_missing_model_tells_which_command_fetches_it(face_data: Path, tmp_path: Path) -> None:
    result = run("faces", "detect", str(face_data / "insightface/t1.jpg"),
                 env={"MAMORU_MODELS_DIR": str(tmp_path)})
    assert_clean_user_error(result, "mamoru models fetch --pack yunet-sface")


def test_research_pack_without_acceptance_is_refused(face_data: Path) -> None:
    result = run("faces", "detect", str(face_data / "insightface/t1.jpg"), "--pack", "scrfd-mbf")
    assert_clean_user_error(result, "--accept-licence")


def test_verify_reports_a_tampered_file(settings: MamoruSettings, tmp_path: Path) -> None:
    shutil.copytree(settings.resolved_models_dir / "yunet-sface", tmp_path / "yunet-sface")
    detector = tmp_path / "yunet-sface" / "face_detection_yunet_2023mar.onnx"
    detector.write_bytes(detector.read_bytes()[:-1] + b"\x00")
    result = run("models", "verify", env={"MAMORU_MODELS_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "face_detection_yunet_2023mar.onnx: tampered" in result.stdout


def test_list_shows_packs_licences_and_presence(settings: MamoruSettings) -> None:
    result = run("models", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["yunet-sface"]["active"] and rows["yunet-sface"]["commercial_use"]
    assert not rows["scrfd-mbf"]["commercial_use"]
    assert "non-commercial" in rows["scrfd-mbf"]["licence"]
    assert rows["yunet-sface"]["present"] and rows["scrfd-mbf"]["present"]


def test_a_bad_config_fails_at_start_up_with_the_field_named(tmp_path: Path) -> None:
    config = tmp_path / "mamoru.toml"
    config.write_text("[runtime]\nintra_op_threads = 0\n")
    result = run("models", "list", env={"MAMORU_CONFIG": str(config)})
    assert_clean_user_error(result, "runtime.intra_op_threads")
    config.write_text("[engine]\npakc = 'yunet-sface'\n")
    assert_clean_user_error(
        run("models", "list", env={"MAMORU_CONFIG": str(config)}), "engine.pakc")
