"""The docker sandbox against a real daemon and a locally built image (nothing is pulled)."""

from __future__ import annotations

import time

import pytest

from bench.agents import AgentSpec, make_spec
from bench.run import RunConfig, execute, make_plan
from bench.sandbox.docker import DockerSandbox
from bench.sandbox.errors import SandboxError
from bench.sandbox.images import BASE_IMAGE


@pytest.fixture
def box(docker_client, tmp_path):
    sandbox = DockerSandbox(
        tmp_path, BASE_IMAGE, env={"PYTHONPATH": "{workdir}"}, cpus=1, memory_gb=0.5, pids=128, client=docker_client
    )
    yield sandbox
    sandbox.close()


def test_exec_persists_cwd_and_env_and_sees_the_bind_mount(box, tmp_path):
    (tmp_path / "from_host.txt").write_text("hello from host")
    assert box.execute("cat from_host.txt").output == "hello from host"
    assert box.execute("mkdir -p sub && cd sub && export COLOR=blue && echo made > made.txt").exit_code == 0
    result = box.execute("pwd; echo $COLOR $PYTHONPATH")
    assert result.output.split() == ["/workspace/sub", "blue", "/workspace"]
    assert (tmp_path / "sub" / "made.txt").read_text() == "made\n"
    assert box.execute("exit 7").exit_code == 7


def test_no_network_and_limits(box):
    interfaces = box.execute("cat /proc/net/dev").output
    assert "lo:" in interfaces and "eth0" not in interfaces
    attrs = box.container.attrs["HostConfig"]
    assert attrs["NetworkMode"] == "none" and attrs["Memory"] == 512 * 1024 * 1024
    assert attrs["PidsLimit"] == 128 and attrs["NanoCpus"] == 1_000_000_000
    memory = box.execute("cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert memory.output.strip() == str(512 * 1024 * 1024)


def test_no_capabilities_and_no_privilege_gain(box):
    assert box.execute("grep CapEff /proc/self/status").output.split()[-1] == "0000000000000000"
    assert box.execute("grep NoNewPrivs /proc/self/status").output.split()[-1] == "1"
    assert box.execute("mount -t tmpfs none /mnt").exit_code != 0
    attrs = box.container.attrs["HostConfig"]
    assert attrs["CapDrop"] == ["ALL"] and "no-new-privileges" in attrs["SecurityOpt"]


def test_editor_reads_are_bounded_inside_the_container(box):
    box.execute("mkfifo /tmp/fifo; head -c 3000000 /dev/zero > /tmp/big.bin")
    started = time.monotonic()
    for path, message in (
        ("/tmp/fifo", "not a regular file"),
        ("/dev/zero", "not a regular file"),
        ("/tmp/big.bin", "too large"),
    ):
        with pytest.raises(OSError, match=message):
            box.read_file(path)
    assert time.monotonic() - started < 30
    text = "x" * 200_000
    box.write_file("big/note.txt", text)
    assert box.read_file("big/note.txt") == text


def test_endless_output_cannot_fill_the_runners_memory(box):
    result = box.execute("yes atebench-flood | head -c 300000000; echo done-flooding", timeout=120)
    assert result.exit_code == 0 and "done-flooding" in result.output
    assert len(result.output) < 200_000 and "characters cut" in result.output


def test_timeout_kills_every_process(box):
    started = time.monotonic()
    result = box.execute("(sleep 300 &); (setsid sleep 301 &); bash -c 'sleep 200'", timeout=1.5)
    assert result.timed_out and result.exit_code == -1 and time.monotonic() - started < 15
    processes = box.execute("ps -eo args").output
    assert "sleep 30" not in processes and "sleep 200" not in processes
    assert box.execute("echo alive").output.strip() == "alive"


def test_files_round_trip(box):
    box.write_file("/tmp/deep/dir/note.txt", "ünïcode\n")
    assert box.read_file("/tmp/deep/dir/note.txt") == "ünïcode\n"
    assert box.execute("cat /tmp/deep/dir/note.txt").output == "ünïcode\n"


def test_removed_container_is_a_clear_error(box):
    box.container.remove(force=True)
    with pytest.raises(SandboxError, match="is gone \\(removed mid-trial\\)"):
        box.execute("echo hi")


def test_gpu_request_without_nvidia_runtime(docker_client, tmp_path):
    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this daemon has the NVIDIA runtime")
    with pytest.raises(SandboxError, match="needs 1 GPU\\(s\\) but the Docker daemon has no NVIDIA runtime"):
        DockerSandbox(tmp_path, BASE_IMAGE, gpus=[0], client=docker_client)


def test_trial_end_to_end_in_docker(docker_client, toy_root, cache, tmp_path):
    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=["oracle", "nop"],
        run_id="d",
        sandbox="docker",
        results_dir=str(tmp_path / "results"),
        specs_root=str(toy_root),
    )
    rows = execute(cfg, make_plan(cfg, {"oracle": make_spec("oracle"), "nop": make_spec("nop")}))
    assert {r["agent"]: r["status"] for r in rows} == {"oracle": "resolved", "nop": "unresolved"}, rows
    assert not [
        c
        for c in docker_client.containers.list(all=True)
        if c.name.startswith("atebench-")
        and c.attrs["Config"]["WorkingDir"] == "/workspace"
        and str(tmp_path) in str(c.attrs["Mounts"])
    ]


def test_smoke_task_on_the_reference_image(docker_client, cache, tmp_path):
    cfg = RunConfig(
        task="smoke",
        framework="reference",
        agents=["oracle"],
        run_id="ref",
        sandbox="docker",
        results_dir=str(tmp_path / "results"),
    )
    [row] = execute(cfg, make_plan(cfg, {"oracle": make_spec("oracle")}))
    assert row["status"] == "resolved", row["error"]
    assert row["grade"]["tests_run"] == 5
    assert any(tag.startswith("atebench/reference:") for image in docker_client.images.list() for tag in image.tags)


def test_reference_image_runs_the_trainers_own_tests(docker_client, tmp_path):
    """The reference image gets torch & co. from wheels the host downloaded (the container has no network)."""
    from bench import specs, workspace
    from bench.sandbox import open_sandbox

    framework = specs.load_framework("reference")
    work = tmp_path / "ws"
    workspace.copy_clean(framework.bundled_path(), work)
    sandbox = open_sandbox("docker", work, framework, specs.Resources(cpus=2, memory_gb=4), gpus=[])
    try:
        probe = sandbox.execute(
            "python -c 'import torch, transformers, reftrain; print(torch.__version__)'", timeout=120
        )
        assert probe.exit_code == 0 and probe.output.strip().startswith("2."), probe.output
        sandbox.execute("python -m pip download --no-deps -q -d /tmp/x six", timeout=120)
        assert "six" not in sandbox.execute("ls /tmp/x 2>/dev/null").output, "the container must have no network"
        suite = sandbox.execute(
            "python -m pytest -q -p no:cacheprovider tests/test_models.py 2>&1 | tail -3", timeout=600
        )
        assert " passed" in suite.output and "failed" not in suite.output, suite.output
        # torchrun's standalone rendezvous resolves the hostname: it must answer without a network (it hung before)
        sandbox.write_file("/tmp/allreduce.py", ALLREDUCE)
        ranks = sandbox.execute(
            "timeout 120 python -m torch.distributed.run --standalone --nproc-per-node=2 /tmp/allreduce.py 2>&1",
            timeout=180,
        )
        assert ranks.output.count("ALLREDUCE_OK 3.0") == 2, ranks.output[-3000:]
    finally:
        sandbox.close()


ALLREDUCE = """import os
import torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.ones(1) * (dist.get_rank() + 1)
dist.all_reduce(t)
os.write(1, f"ALLREDUCE_OK {float(t)}\\n".encode())  # one write: the two ranks share the output
dist.destroy_process_group()
"""


class ContainerKillingAgent:
    """Removes its own container mid-run, swallows the sandbox error and claims success."""

    name = "killer"

    def __init__(self, client):
        self.client = client

    def run(self, ctx):
        from bench.types import AgentOutcome

        ctx.sandbox.execute("echo work > done.txt")
        self.client.containers.get(ctx.sandbox.container.id).remove(force=True)
        try:
            ctx.sandbox.execute("echo more")
        except SandboxError:
            pass
        return AgentOutcome(exit_status="completed")


def test_container_removed_mid_trial_ends_it_as_error(docker_client, toy_root, cache, tmp_path):
    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=["killer"],
        run_id="k",
        sandbox="docker",
        results_dir=str(tmp_path / "results"),
        specs_root=str(toy_root),
    )
    killer = AgentSpec("killer", lambda trial: ContainerKillingAgent(docker_client))
    [row] = execute(cfg, make_plan(cfg, {"killer": killer}))
    assert row["status"] == "error" and row["error"]["phase"] == "agent"
    assert "is gone (removed mid-trial)" in row["error"]["message"]
    diff = (tmp_path / "results" / "k" / "arith__mul" / "toy" / "killer" / "0" / "agent.diff").read_text()
    assert "+work" in diff, "work done before the container died is kept"
