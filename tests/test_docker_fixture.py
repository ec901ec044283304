"""Without a reachable Docker daemon the docker tests skip with a reason saying how to start one;
the test suite never installs or starts a system service itself."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_docker_tests_skip_visibly_without_a_daemon(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock", "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--basetemp={tmp_path / 'inner'}",
            "tests/test_sandbox_docker.py::test_files_round_trip",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "DOCKER TESTS SKIPPED: no Docker daemon reachable" in result.stdout
    assert "bash .ci/setup-docker.sh" in result.stdout
    assert "setup-docker: " not in result.stdout + result.stderr, "the fixture must not run the set-up script"
