"""GPU accounting: exclusive assignment under threads, and honest sampling (None without NVML)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from bench.gpu import GpuAllocator, GpuSampler, detect_gpus, visible_gpus

GPU_LOAD = """
import time, torch
x = torch.randn(4096, 4096, device="cuda:{gpu}")
end = time.time() + {seconds}
while time.time() < end:
    x = (x @ x).tanh()
torch.cuda.synchronize()
"""


UUIDS = ["GPU-0a1b-aaaa", "GPU-0a1b-bbbb", "GPU-7c00-cccc"]


@pytest.mark.parametrize(
    "setting, expected",
    [
        (None, [0, 1, 2]),  # unset: every GPU
        ("", []),  # set and empty: CUDA sees none (a user running on CPU on a GPU host)
        ("-1", []),
        ("2,0", [2, 0]),
        (" 1 , 2 ", [1, 2]),
        ("0,7,1", [0]),  # CUDA's list ends at the first entry naming no GPU
        ("1,1", [1]),
        ("GPU-7c00-cccc", [2]),  # a whole UUID
        ("GPU-0a1b-b,0", [1, 0]),  # a UUID prefix naming one GPU
        ("GPU-0a1b,2", []),  # a prefix naming two ends the list
        ("MIG-5e1d-0000", []),  # a MIG slice is no whole GPU to hand a trial
    ],
)
def test_visible_gpus_reads_cuda_visible_devices_as_cuda_does(setting, expected):
    assert visible_gpus(setting, UUIDS) == expected


def test_an_empty_cuda_visible_devices_offers_no_gpu_on_any_host(monkeypatch):
    """What `CUDA_VISIBLE_DEVICES= python runner.py ...` gets on this machine, GPUs or not."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus() == []
    assert GpuAllocator().gpus == []


def test_sampler_reports_what_the_machine_has():
    """On a GPU-less machine: unavailable and None. On a GPU machine: a real load is seen as active."""
    gpus = detect_gpus()
    if not gpus:
        report = GpuSampler([0], interval_s=0.05).start().stop()
        assert (report.available, report.active_gpu_s, report.gpu_hours_allocated) == (False, None, None)
        return
    started = time.monotonic()
    with_load = GpuSampler(gpus[:1], interval_s=0.1).start()
    subprocess.run([sys.executable, "-c", GPU_LOAD.format(gpu=gpus[0], seconds=3)], check=True, timeout=120)
    report = with_load.stop()
    wall = time.monotonic() - started
    assert report.available and report.gpus == gpus[:1] and report.samples >= 10
    assert 2.0 <= report.active_gpu_s <= wall + 0.5
    assert report.gpu_hours_allocated == pytest.approx(wall / 3600, rel=0.05)
    idle = GpuSampler(gpus[:1], interval_s=0.1).start()
    time.sleep(1.0)
    assert idle.stop().active_gpu_s < 0.5


def test_allocator_never_hands_one_gpu_to_two_trials():
    allocator = GpuAllocator(gpus=[0, 1, 2, 3])
    holders: dict[int, int] = {}
    overlaps, lock = [], threading.Lock()

    def trial(index: int) -> None:
        with allocator.allocate(2, timeout_s=30) as gpus:
            with lock:
                overlaps.extend(g for g in gpus if g in holders)
                holders.update({g: index for g in gpus})
            time.sleep(0.01)
            with lock:
                for g in gpus:
                    del holders[g]

    threads = [threading.Thread(target=trial, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert overlaps == [] and not any(t.is_alive() for t in threads)
    assert allocator.acquire(4) == [0, 1, 2, 3]


def test_allocator_waits_then_times_out_and_rejects_impossible_requests():
    allocator = GpuAllocator(gpus=[5, 6])
    taken = allocator.acquire(2)
    with pytest.raises(TimeoutError, match="no 1 free GPU"):
        allocator.acquire(1, timeout_s=0.1)
    threading.Timer(0.1, allocator.release, args=([taken[0]],)).start()
    assert allocator.acquire(1, timeout_s=5) == [taken[0]]
    with pytest.raises(ValueError, match="needs 3 GPU\\(s\\) but this machine offers 2"):
        allocator.acquire(3)
    with pytest.raises(ValueError, match="not acquired from this allocator"):
        allocator.release([7])
    assert allocator.acquire(0) == []


def test_shared_allocator_lends_each_gpu_to_k_trials_never_one_gpu_twice_to_a_trial():
    allocator = GpuAllocator(gpus=[0, 1, 2, 3], share=3)
    held = [allocator.acquire(4) for _ in range(3)]
    assert held == [[0, 1, 2, 3]] * 3
    with pytest.raises(TimeoutError, match="no 1 free GPU"):
        allocator.acquire(1, timeout_s=0.1)
    allocator.release(held.pop())
    # the freed slots go to the least used GPUs first, and one trial never gets a GPU twice
    held += [allocator.acquire(2), allocator.acquire(2)]
    assert held[2:] == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="not acquired"):
        allocator.release([0, 0])
    for gpus in held:
        allocator.release(gpus)
    with pytest.raises(ValueError, match="not acquired"):
        allocator.release([1, 2, 3])  # every GPU is back at full share: a release too many
    with pytest.raises(ValueError, match="at least one trial"):
        GpuAllocator(gpus=[0], share=0)


def test_allocator_on_this_machine_offers_what_nvml_sees():
    allocator = GpuAllocator()
    assert allocator.gpus == detect_gpus()
    assert allocator.acquire(0) == []


def test_gpus_per_trial_is_the_override_else_the_larger_ask(toy_root):
    from bench.gpu import gpus_per_trial
    from bench.specs import load_framework, load_task

    framework, task = load_framework("toy", toy_root), load_task("arith/mul", toy_root).spec
    assert gpus_per_trial(framework, task) == 0
    asking = task.model_copy(update={"resources": task.resources.model_copy(update={"gpus": 2})})
    assert gpus_per_trial(framework, asking) == 2
    bigger = framework.model_copy(update={"sandbox": framework.sandbox.model_copy(update={"gpus": 4})})
    assert gpus_per_trial(bigger, asking) == 4 and gpus_per_trial(bigger, None) == 4
    assert gpus_per_trial(bigger, asking, override=1) == 1 and gpus_per_trial(bigger, asking, override=0) == 0
    question = asking.model_copy(update={"grading": asking.grading.model_copy(update={"kind": "answer"})})
    assert gpus_per_trial(bigger, question) == 0 and gpus_per_trial(bigger, question, override=1) == 1


def test_framework_gpus_raises_the_ask_on_the_named_framework_only(toy_root):
    """A task whose version on one framework needs more GPUs than elsewhere (Megatron's two-rank layouts)."""
    from bench.gpu import gpus_per_trial
    from bench.specs import Resources, load_framework, load_task

    framework, task = load_framework("toy", toy_root), load_task("arith/mul", toy_root).spec
    for named, expected in (({"toy": 2}, 2), ({"other": 2}, 0)):
        spec = task.model_copy(update={"resources": Resources(framework_gpus=named)})
        assert gpus_per_trial(framework, spec) == expected
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Resources(framework_gpus={"toy": -1})
