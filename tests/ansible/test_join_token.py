"""kubeedge.edge.join_token against the real ``keadm gettoken`` and a real CA on disk."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubeedge.kit import jointoken, pki
from tests.ansible.conftest import COLLECTIONS, MODULES, VENV_BIN

KEADM = str(VENV_BIN / "keadm")


@pytest.fixture
def ca(tmp_path: Path) -> pki.CertificateAuthority:
    return pki.load_or_create_ca(tmp_path / "ca" / "rootCA.crt", tmp_path / "ca" / "rootCA.key")


def test_token_computed_from_the_ca_dir_verifies_with_the_ca_key(module, tmp_path, ca) -> None:
    run = module(
        "join_token",
        {
            "keadm": KEADM,
            "token_file": str(tmp_path / "absent"),
            "ca_dir": str(tmp_path / "ca"),
            "wait_timeout": 0,
        },
    )
    assert run.rc == 0, run.result
    assert not run.failed, run.result
    assert run.result["changed"] is False
    token = jointoken.parse(run.result["token"])
    assert run.result["ca_hash"] == token.ca_hash
    assert token.ca_hash == ca.hash
    expiry = jointoken.verify_bearer(token.bearer, ca.key_der, now=time.time())
    assert run.result["expires"] == int(expiry.timestamp())
    # Default tokenRefreshDuration is 12 h; the token lives twice that.
    assert 23 * 3600 < run.result["expires"] - time.time() <= 24 * 3600


def test_token_file_written_by_cloudcore_is_returned(module, tmp_path, ca) -> None:
    token = jointoken.make(ca.key_der, ca.cert_der, now=time.time())
    token_file = tmp_path / "tokens" / "tokendata"
    token_file.parent.mkdir()
    jointoken.write_token_file(token_file, token)
    run = module("join_token", {"keadm": KEADM, "token_file": str(token_file), "wait_timeout": 0})
    assert not run.failed, run.result
    assert run.result["token"] == token
    assert run.result["ca_hash"] == ca.hash


def test_waits_for_the_token_file_to_appear(tmp_path, ca) -> None:
    token_file = tmp_path / "tokendata"
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps(
            {"ANSIBLE_MODULE_ARGS": {"keadm": KEADM, "token_file": str(token_file), "wait_timeout": 30}}
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(MODULES / "join_token.py"), str(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(COLLECTIONS), "PATH": str(VENV_BIN)},
    )
    try:
        token = jointoken.make(ca.key_der, ca.cert_der, now=time.time())
        jointoken.write_token_file(token_file, token)
        out, err = proc.communicate(timeout=40)
    finally:
        proc.kill()
    result = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0, (result, err)
    assert result["token"] == token


def test_missing_token_fails_after_the_wait_naming_the_file(module, tmp_path) -> None:
    started = time.monotonic()
    run = module("join_token", {"keadm": KEADM, "token_file": str(tmp_path / "tokendata"), "wait_timeout": 1})
    assert run.failed
    assert run.rc != 0
    assert time.monotonic() - started >= 1
    assert "no join token after 1s" in run.result["msg"]
    assert "tokendata" in run.result["msg"]


def test_token_expiring_too_soon_fails_without_leaking_it(module, tmp_path, ca) -> None:
    token = jointoken.make(ca.key_der, ca.cert_der, now=time.time() - 2 * 12 * 3600 + 60)
    token_file = tmp_path / "tokendata"
    jointoken.write_token_file(token_file, token)
    run = module("join_token", {"keadm": KEADM, "token_file": str(token_file), "wait_timeout": 0})
    assert run.failed
    assert "expires in" in run.result["msg"]
    assert "min_validity 300s" in run.result["msg"]
    assert token not in run.stdout
    assert "token" not in run.result


def test_malformed_token_file_fails_without_leaking_it(module, tmp_path) -> None:
    secret = "f" * 64 + ".not-a-jwt"
    (tmp_path / "tokendata").write_text(secret + "\n")
    run = module("join_token", {"keadm": KEADM, "token_file": str(tmp_path / "tokendata"), "wait_timeout": 0})
    assert run.failed
    assert "malformed token" in run.result["msg"]
    assert secret not in run.stdout


def test_missing_keadm_fails_but_check_mode_reports_nothing_to_read(module, tmp_path) -> None:
    args = {"keadm": str(tmp_path / "no" / "keadm"), "wait_timeout": 0}
    run = module("join_token", args)
    assert run.failed
    assert "install kubeedge-py first" in run.result["msg"]
    checked = module("join_token", args, check_mode=True)
    assert not checked.failed
    assert checked.rc == 0
    assert checked.result["token"] is None
    assert checked.result["changed"] is False


def test_expiry_is_reported_in_unix_seconds(module, tmp_path, ca) -> None:
    now = time.time()
    token = jointoken.make(ca.key_der, ca.cert_der, now=now, refresh=dt.timedelta(hours=1))
    jointoken.write_token_file(tmp_path / "tokendata", token)
    run = module(
        "join_token",
        {"keadm": KEADM, "token_file": str(tmp_path / "tokendata"), "wait_timeout": 0, "min_validity": 3600},
    )
    assert not run.failed, run.result
    assert run.result["expires"] == int(now + 7200)
