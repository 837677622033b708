"""The `sbm` command, as a user runs it: a real subprocess, exit codes, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CORPORA

SBM = [sys.executable, "-m", "sandboxmode"]
KEY = Path(__file__).resolve().parents[1] / "src/sandboxmode/data/demo-key.asc"


def sbm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SBM, *args], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent)


def test_doctor_json() -> None:
    r = sbm("doctor", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["level"] == "STRONG"
    assert rep["features"]["seccomp_filter"] is True


def test_demo_contains_everything() -> None:
    r = sbm("demo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing escaped" in r.stdout
    assert "ESCAPED" not in r.stdout
    assert "21A63A83EA3B4AD66FF0DDAE33100E71D7324AD9" in r.stdout


def test_parse_openpgp_json_and_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.asc"
    bad.write_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n")
    r = sbm("parse", "openpgp", "--json", str(KEY), str(bad))
    assert r.returncode == 1
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["ok"] and lines[0]["result"][0]["keyid"] == "33100E71D7324AD9"
    assert not lines[1]["ok"] and lines[1]["error"] == "TargetError"
    assert "Traceback" not in r.stderr


def test_parse_missing_file_is_a_usage_error() -> None:
    r = sbm("parse", "openpgp", "/nonexistent/key.asc")
    assert r.returncode == 2
    assert "cannot read" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.skipif(not CORPORA.is_dir(), reason="corpora not present beside the repository")
def test_parse_apparmor() -> None:
    blob = CORPORA / "apparmor/blobs/abi-3.0/etc/php-fpm.bin"
    r = sbm("parse", "apparmor", str(blob))
    assert r.returncode == 0, r.stderr
    assert "php-fpm" in r.stdout


def test_run_module_function() -> None:
    r = sbm("run", "--json", "targets:length", str(KEY))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["result"] == KEY.stat().st_size


def test_run_bad_target_is_a_usage_error() -> None:
    r = sbm("run", "no_such_module:f", str(KEY))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_bad_usage() -> None:
    r = sbm("parse", "xml", "x")
    assert r.returncode == 2


def test_control_characters_from_the_sandbox_are_not_printed(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"\x1b[31mred\x1b[0m")
    r = sbm("run", "targets:read_shared", str(f))
    assert r.returncode == 0
    assert "\x1b" not in r.stdout
