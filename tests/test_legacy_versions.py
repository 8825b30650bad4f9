"""The legacy adapter overrides private methods of python-engineio/python-socketio: it is only
known to work with the exact releases it was written for."""

from __future__ import annotations

from pathlib import Path

from gru.sockets.legacy import UPSTREAM_VERSIONS, version_mismatches

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_installed_upstream_versions_are_the_ones_the_adapter_was_written_for():
    mismatches = version_mismatches()
    assert mismatches == {}, "\n".join(
        f"{package} {installed} is installed, but gru/sockets/legacy was written for {expected}: "
        f"re-check every override in gru/sockets/legacy and gru/sockets/engine.py against the new "
        f"release before changing UPSTREAM_VERSIONS"
        for package, (expected, installed) in mismatches.items())


def test_requirements_and_pyproject_pin_exactly_those_versions():
    requirements = (REPO_ROOT / "requirements.txt").read_text()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    for package, version in UPSTREAM_VERSIONS.items():
        assert f"{package}=={version}" in requirements
        assert f'"{package}=={version}"' in pyproject


def test_a_different_version_is_reported(monkeypatch):
    monkeypatch.setitem(UPSTREAM_VERSIONS, "python-engineio", "0.0.1")
    assert version_mismatches()["python-engineio"][0] == "0.0.1"
