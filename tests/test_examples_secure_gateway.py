"""examples/secure-gateway: make-credentials.sh writes Secrets pilotfish serves as is."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pilotfish.cli import load_config
from pilotfish.translator.translate import translate
from tests.test_translator_tls_fixtures import GATEWAY_PROXY

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "secure-gateway"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_make_credentials_gives_a_config_without_problems(tmp_path: Path) -> None:
    config_dir = tmp_path / "secure-gateway"
    shutil.copytree(EXAMPLE, config_dir, ignore=shutil.ignore_patterns("certs", "credentials.*"))
    subprocess.run([str(config_dir / "make-credentials.sh")], check=True, capture_output=True)
    assert (config_dir / "certs" / "example.com.crt").exists()
    config = load_config(config_dir)
    translation = translate(config, GATEWAY_PROXY)
    assert [*config.errors, *translation.status] == []
    assert [s.name for s in translation.secrets] == [
        "kubernetes://helloworld-credential",
        "kubernetes://httpbin-credential",
        "kubernetes://mtls-credential",
        "kubernetes://mtls-credential-cacert",
    ]
    assert [li.name for li in translation.listeners] == [
        "0.0.0.0_8080",
        "0.0.0.0_8443",
        "0.0.0.0_31400",
    ]
