"""The local sandbox: a real persistent bash, real process-tree kills, a scrubbed environment."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

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


NEEDS_BWRAP = pytest.mark.skipif(
    not bwrap_available(), reason="BUBBLEWRAP TESTS SKIPPED: bwrap is not installed (apt-get install bubblewrap)"
)


@NEEDS_BWRAP
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


@NEEDS_BWRAP
def test_the_wall_holds_for_root(tmp_path):
    """As root (as CI runs): no capabilities, no host processes, no host-private files, no remount, no host net."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    box = LocalSandbox(tmp_path)
    try:

        def run(command):
            return box.execute(command).output.strip()

        assert run("grep CapEff /proc/self/status").split()[-1] == "0000000000000000"
        assert run("grep NoNewPrivs /proc/self/status").split()[-1] == "1"
        assert int(run("ls /proc | grep -c '^[0-9][0-9]*$'")) < 10, "host processes must be invisible"
        assert os.getpid() > 10 and run(f"test -e /proc/{os.getpid()}/environ && echo seen") == ""
        if os.path.exists("/etc/shadow"):
            assert "root:" not in run("cat /etc/shadow 2>&1"), "a file the host keeps from users must be hidden"
        assert box.execute("mount -t tmpfs none /usr").exit_code != 0
        assert box.execute("mount -o remount,rw /usr").exit_code != 0
        assert box.execute("echo 1 > /proc/sys/vm/drop_caches").exit_code != 0, "sysctls must be read-only"
        assert box.execute("echo x > /proc/sys/kernel/core_pattern").exit_code != 0
        assert box.execute(f"ls {Path.home()}/.cache >/dev/null 2>&1").exit_code != 0 or Path.home() == Path("/tmp")
        probe = (
            f"python -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); "
            f"print('REACHED')\" 2>&1"
        )
        assert "REACHED" not in run(probe), "the host's loopback must be unreachable"
    finally:
        box.close()
        server.close()


@NEEDS_BWRAP
def test_nothing_the_agent_starts_survives_the_sandbox(tmp_path):
    marker = f"atebench_survivor_{os.getpid()}"
    box = LocalSandbox(tmp_path)
    box.execute(
        f"setsid nohup bash -c 'exec -a {marker} sleep 300' >/dev/null 2>&1 < /dev/null & "
        f"(bash -c 'exec -a {marker} sleep 300' &); nohup bash -c 'exec -a {marker} sleep 300' >/dev/null 2>&1 &"
    )
    time.sleep(0.5)
    assert len([p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).startswith(marker)]) == 3
    box.close()
    time.sleep(0.5)
    assert [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).startswith(marker)] == []


@NEEDS_BWRAP
def test_limits_apply_where_the_kernel_allows(tmp_path):
    box = LocalSandbox(tmp_path, memory_gb=0.25, pids=64, file_size_gb=0.001)
    try:
        big = box.execute("head -c 5000000 /dev/zero > big.bin; echo rc=$?")
        assert "rc=0\n" not in big.output and (tmp_path / "big.bin").stat().st_size <= 0.001 * 2**30 + 4096
        if "memory_gb" in box.limits:
            hog = box.execute(
                'python -c \'x = bytearray(1024 * 1024 * 1024); x[::4096] = b"1" * len(x[::4096]); '
                'print("ALLOC" + "ATED")\''
            )
            assert "ALLOCATED" not in hog.output and hog.exit_code != 0, hog
            forks = box.execute("for i in $(seq 200); do sleep 5 & done 2>&1 | tail -1; kill %1 2>/dev/null; true")
            assert "resource temporarily unavailable" in forks.output.lower() or "fork" in forks.output.lower()
        else:
            assert "not enforced" in box.limits["cgroup_note"], box.limits
    finally:
        box.close()


@pytest.mark.parametrize("isolate", MODES, ids=lambda iso: "bwrap" if iso else "plain")
def test_editor_file_operations_are_bounded_and_inside(tmp_path, isolate):
    (tmp_path / "ws").mkdir()
    box = LocalSandbox(tmp_path / "ws", isolate=isolate)
    try:
        box.execute("mkfifo fifo; head -c 3000000 /dev/zero > big.bin")
        started = time.monotonic()
        for path, message in (
            ("fifo", "not a regular file"),
            ("/dev/zero", "not a regular file"),
            ("big.bin", "too large"),
            ("missing.txt", "no such file"),
        ):
            with pytest.raises(OSError, match=message):
                box.read_file(path)
        assert time.monotonic() - started < 20, "a FIFO or a device must not hang the runner"
        text = "ünïcode\n" + "x" * 300_000
        box.write_file("deep/dir/note.txt", text)
        assert box.read_file("deep/dir/note.txt") == text and (tmp_path / "ws" / "deep" / "dir" / "note.txt").is_file()
        with pytest.raises(OSError, match="is a directory"):
            box.write_file("deep", "x")
        if isolate:
            outside = tmp_path / "outside.txt"  # under /tmp: the sandbox's private /tmp takes the write
            box.write_file(str(outside), "escaped")
            assert box.read_file(str(outside)) == "escaped"
            assert not outside.exists(), "a write outside the workspace must not reach the host"
    finally:
        box.close()


def _cuda_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


ALLREDUCE = """import os
import torch
import torch.distributed as dist

dist.init_process_group("nccl")
rank = dist.get_rank()
torch.cuda.set_device(rank)
x = torch.ones(1024, device="cuda") * (rank + 1)
dist.all_reduce(x)
expected = sum(range(1, dist.get_world_size() + 1))
assert torch.allclose(x, torch.full_like(x, expected)), x[:4]
y = torch.randn(2048, 2048, device="cuda")
print(f"ALLREDUCE_OK rank={rank} world={dist.get_world_size()} matmul={float((y @ y).abs().mean()):.3f}", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.gpu
@pytest.mark.skipif(_cuda_count() == 0, reason="GPU TESTS SKIPPED: no CUDA GPU visible")
@NEEDS_BWRAP
def test_gpus_and_nccl_work_inside_the_wall(tmp_path):
    """A GPU trial is isolated too: the GPUs it holds, NCCL between its ranks, and still no capabilities."""
    world = min(2, _cuda_count())
    (tmp_path / "allreduce.py").write_text(ALLREDUCE)
    box = LocalSandbox(
        tmp_path,
        gpus=list(range(world)),
        env={"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in range(world)), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
    )
    try:
        run = box.execute(
            f"python -m torch.distributed.run --standalone --nproc-per-node {world} allreduce.py 2>&1", timeout=300
        )
        assert run.output.count("ALLREDUCE_OK") == world, run.output[-3000:]
        assert box.execute("grep CapEff /proc/self/status").output.split()[-1] == "0000000000000000"
        assert int(box.execute("ls /proc | grep -c '^[0-9][0-9]*$'").output) < 20
    finally:
        box.close()


def test_endless_output_cannot_fill_the_runners_memory(sandbox):
    result = sandbox.execute("yes atebench-flood | head -c 300000000; echo done-flooding", timeout=120)
    assert result.exit_code == 0 and "done-flooding" in result.output
    assert len(result.output) < 200_000 and "characters cut" in result.output


def test_math_libraries_get_the_tasks_cpu_share_not_the_hosts_cores(tmp_path):
    """Parallel trials on a many-core host: each sees resources.cpus threads, or they oversubscribe it."""
    from bench import specs
    from bench.sandbox import open_sandbox

    framework = specs.load_framework("reference")
    sandbox = open_sandbox("local", tmp_path, framework, specs.Resources(cpus=1.5), gpus=[], isolate=bwrap_available())
    try:
        probe = sandbox.execute(
            "echo $OMP_NUM_THREADS $MKL_NUM_THREADS $OPENBLAS_NUM_THREADS; "
            "python -c 'import torch; print(torch.get_num_threads())'",
            timeout=120,
        )
    finally:
        sandbox.close()
    assert probe.output.split() == ["1", "1", "1", "1"], probe.output


def test_one_truncate_keeps_head_and_tail_with_one_marker():
    """The sandbox and the agent's tools cut output with the same function: one marker, head and tail kept."""
    from bench.agents import tools
    from bench.sandbox import docker, local
    from bench.types import truncate

    assert local.truncate is truncate and tools.truncate is truncate and docker.truncate is truncate
    text = "H" * 500 + "x" * 10_000 + "T" * 500
    cut = truncate(text, 1000)
    assert cut.startswith("H" * 400) and cut.endswith("x" * 100 + "T" * 500) and cut.count("characters cut") == 1
    assert "[... 10000 characters cut ...]" in cut and truncate("short", 1000) == "short"


@pytest.mark.skipif(not bwrap_available(), reason="BUBBLEWRAP TESTS SKIPPED: bwrap is not installed")
def test_a_spawned_process_output_is_a_bounded_copy_no_process_inside_can_rewrite(tmp_path, monkeypatch):
    """Its stdout is a pipe the runner copies, not the host file: a process behind the wall that opens
    /proc/<pid>/fd/1 cannot truncate what came before (it could with the file), and the copy stops at its bound."""
    from bench.sandbox import files

    monkeypatch.setattr(files, "MAX_SPAWN_OUTPUT_BYTES", 4096)
    work = tmp_path / "work"
    work.mkdir()
    sandbox = LocalSandbox(work)
    try:
        out = tmp_path / "spawned.log"
        truncate_from_inside = "bash -c ': > /proc/1/fd/1; : > /proc/$PPID/fd/1'"
        flood = "head -c 100000 /dev/zero | tr '\\0' x"
        spawned = sandbox.spawn(f"echo first; {truncate_from_inside}; echo second; {flood}", output_path=out)
        assert spawned.wait(60) == 0
    finally:
        sandbox.close()
    text = out.read_text()
    assert text.startswith("first\nsecond\nxxx"), text[:200]
    assert text.endswith("[atebench: output cut at 4096 bytes]\n") and len(text) < 4200, len(text)
