"""The local sandbox: a real persistent bash, real process-tree kills, a scrubbed environment."""

from __future__ import annotations

import os
import time

import pytest

from bench.sandbox.local import LocalSandbox, bwrap_available

MODES = [False] + ([True] if bwrap_available() else [])


@pytest.fixture(params=MODES, ids=lambda iso: "bwrap" if iso else "plain")
def sandbox(request, tmp_path):
    box = LocalSandbox(tmp_path, isolate=request.param)
    yield box
    box.close()


def test_cwd_and_env_persist(sandbox, tmp_path):
    (tmp_path / "sub").mkdir()
    assert sandbox.execute("cd sub && export GREETING=hello").exit_code == 0
    result = sandbox.execute("pwd; echo $GREETING")
    assert result.output.split() == [str(tmp_path / "sub"), "hello"]
    assert sandbox.execute("exit 3").exit_code == 3
    assert sandbox.execute("pwd").output.strip() == str(tmp_path / "sub"), "a new shell starts where the old one was"


def test_exit_code_and_output(sandbox):
    result = sandbox.execute("echo out; echo err >&2; false")
    assert result.exit_code == 1 and "out" in result.output and "err" in result.output
    assert not result.timed_out


def test_timeout_kills_whole_process_tree(sandbox, tmp_path):
    marker = "atebench_sleeper_4242"
    started = time.monotonic()
    result = sandbox.execute(f"(exec -a {marker} sleep 300 &); bash -c 'exec -a {marker} sleep 200'", timeout=1.5)
    assert result.timed_out and result.exit_code == -1 and time.monotonic() - started < 10
    time.sleep(0.3)
    alive = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).startswith(marker)]
    assert alive == [], "the sleeping grandchild must be killed too"
    assert sandbox.execute("echo still alive").output.strip() == "still alive"


def test_a_stuck_shell_is_replaced(sandbox):
    result = sandbox.execute("while true; do :; done", timeout=1)
    assert result.timed_out
    assert sandbox.execute("echo ok").output.strip() == "ok"


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_environment_is_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-should-never-leak")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_should_never_leak")
    monkeypatch.setenv("RANDOM_HOST_VAR", "host-only")
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "0")  # a GPU host's safety switch must survive the scrub
    monkeypatch.setenv("NCCL_AUTH_TOKEN", "nccl-secret-never-leaks")
    box = LocalSandbox(tmp_path, env={"FRAMEWORK_VAR": "{workdir}/x", "MY_SECRET": "no"}, isolate=False)
    try:
        env = box.execute("env").output
    finally:
        box.close()
    assert "should_never_leak" not in env and "should-never-leak" not in env and "nccl-secret" not in env
    assert "RANDOM_HOST_VAR" not in env and "MY_SECRET" not in env
    assert f"FRAMEWORK_VAR={tmp_path}/x" in env
    assert "NCCL_NVLS_ENABLE=0" in env.splitlines()


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap not installed")
def test_bwrap_isolation(tmp_path):
    box = LocalSandbox(tmp_path, isolate=True)
    try:
        interfaces = box.execute("cat /proc/net/dev").output
        assert "lo:" in interfaces and "eth0" not in interfaces
        assert box.execute("touch /usr/atebench-probe").exit_code != 0, "the system must be read-only"
        assert box.execute("touch inside.txt").exit_code == 0 and (tmp_path / "inside.txt").exists()
        box.write_file("/tmp/note.txt", "private tmp")
        assert box.execute("cat /tmp/note.txt").output == "private tmp"
        assert box.read_file("/tmp/note.txt") == "private tmp"
        assert not os.path.exists("/tmp/note.txt")
    finally:
        box.close()
