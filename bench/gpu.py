"""GPU accounting for trials: exclusive assignment, and measured (not estimated) GPU activity.

Why measure: other harnesses estimate GPU time as allocated GPUs x wall time; that rewards nothing
about using GPUs well. We report both: `gpu_hours_allocated` (the estimate) and `active_gpu_s`
(GPU-seconds, summed over the trial's GPUs, where NVML saw utilisation > 0 or memory in use above
the baseline taken when the trial started). Without NVML both are None, never 0.
GPU ids are NVML indices (PCI bus order): run trials with CUDA_DEVICE_ORDER=PCI_BUS_ID so
CUDA_VISIBLE_DEVICES means the same GPUs.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import pynvml

from bench.specs import FrameworkSpec, TaskSpec

MIB = 1024 * 1024


def gpus_per_trial(framework: FrameworkSpec, task: TaskSpec | None, override: int | None = None) -> int:
    """The GPUs a trial holds exclusively: `--gpus` when given, else the largest of what the task
    (resources.gpus, and resources.framework_gpus for this framework) and the framework (sandbox.gpus) ask for;
    none for a Q&A task, which only reads the source (a GPU-only framework's questions still run on CPU hosts).
    The run's plan and the trial both ask here."""
    if override is not None:
        return override
    if task is None:
        return framework.sandbox.gpus
    if task.grading.kind == "answer":
        return 0
    return max(framework.sandbox.gpus, task.resources.gpus, task.resources.framework_gpus.get(framework.name, 0))


def _nvml_start() -> bool:
    try:
        pynvml.nvmlInit()
        return True
    except pynvml.NVMLError:
        return False


def detect_gpus() -> list[int]:
    """The GPUs this machine offers: all NVML sees, narrowed by CUDA_VISIBLE_DEVICES as CUDA reads it."""
    if not _nvml_start():
        return []
    try:
        uuids = [_uuid(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()
    return visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)


def _uuid(handle) -> str:
    uuid = pynvml.nvmlDeviceGetUUID(handle)
    return uuid.decode() if isinstance(uuid, bytes) else uuid


def visible_gpus(setting: str | None, uuids: list[str]) -> list[int]:
    """The NVML indices of the GPUs CUDA would use under CUDA_VISIBLE_DEVICES=`setting`, given every GPU's
    UUID in NVML order. Unset: all. Set, CUDA's rules: entries are indices or (prefixes of) GPU UUIDs, and the
    list ends at the first entry that names no GPU, so "" and "-1" hide every GPU (a user's way to run on CPU).
    A MIG slice is no whole GPU to hand a trial: it ends the list too."""
    if setting is None:
        return list(range(len(uuids)))
    chosen: list[int] = []
    for entry in setting.replace(" ", "").split(","):
        if entry.isdigit() and int(entry) < len(uuids):
            index = int(entry)
        else:
            named = [i for i, uuid in enumerate(uuids) if entry.startswith("GPU-") and uuid.startswith(entry)]
            if len(named) != 1:
                break
            index = named[0]
        if index not in chosen:
            chosen.append(index)
    return chosen


class GpuAllocator:
    """Hands out GPUs so no two concurrent trials share one; blocks until enough are free.

    `share` > 1 lends each GPU to up to that many trials at once (a trial still gets distinct GPUs).
    Only `validate --share-gpus` asks for it: validation judges correctness, and on a 4-GPU machine
    the trials of thirty tasks queue for hours when each holds every GPU alone. Per-trial GPU-time
    figures then overlap, and runs that measure (`run`) never share."""

    def __init__(self, gpus: list[int] | None = None, share: int = 1):
        if share < 1:
            raise ValueError(f"a GPU is lent to at least one trial at once, not {share}")
        self.gpus = detect_gpus() if gpus is None else list(gpus)
        self.share = share
        self._free = {gpu: share for gpu in self.gpus}  # GPU -> trials it can still take
        self._cond = threading.Condition()

    def _open(self) -> list[int]:
        """GPUs with a free slot, the least used first (then by index), so shared trials spread out."""
        return sorted((g for g, slots in self._free.items() if slots > 0), key=lambda g: (-self._free[g], g))

    def acquire(self, n: int, timeout_s: float | None = None) -> list[int]:
        if n > len(self.gpus):
            raise ValueError(
                f"a trial needs {n} GPU(s) but this machine offers {len(self.gpus)} {self.gpus}; "
                "run it on a machine with more GPUs or lower the task's gpus"
            )
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._open()) >= n, timeout=timeout_s):
                raise TimeoutError(f"no {n} free GPU(s) within {timeout_s} s; free now: {sorted(self._open())}")
            taken = sorted(self._open()[:n])
            for gpu in taken:
                self._free[gpu] -= 1
            return taken

    def release(self, gpus: list[int]) -> None:
        with self._cond:
            wrong = [g for g in gpus if g not in self._free or self._free[g] >= self.share]
            if wrong or len(set(gpus)) != len(gpus):
                raise ValueError(f"releasing GPUs {sorted(gpus)} that were not acquired from this allocator")
            for gpu in gpus:
                self._free[gpu] += 1
            self._cond.notify_all()

    @contextmanager
    def allocate(self, n: int, timeout_s: float | None = None):
        gpus = self.acquire(n, timeout_s)
        try:
            yield gpus
        finally:
            self.release(gpus)


@dataclass
class GpuReport:
    available: bool
    gpus: list[int] = field(default_factory=list)
    active_gpu_s: float | None = None
    gpu_hours_allocated: float | None = None
    samples: int = 0


class GpuSampler:
    """Samples NVML every `interval_s` on a background thread between start() and stop()."""

    def __init__(self, gpus: list[int], interval_s: float = 0.5, memory_margin_mib: int = 64):
        self.gpus = list(gpus)
        self.interval_s = interval_s
        self.margin_bytes = memory_margin_mib * MIB
        self.available = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active_s = 0.0
        self._samples = 0

    def start(self) -> GpuSampler:
        self._started = time.monotonic()
        self.available = _nvml_start()
        if not self.available:
            return self
        try:
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in self.gpus]
            self._baseline = [pynvml.nvmlDeviceGetMemoryInfo(h).used for h in self._handles]
        except pynvml.NVMLError:
            pynvml.nvmlShutdown()
            self.available = False
            return self
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> GpuReport:
        wall = time.monotonic() - self._started
        if not self.available:
            return GpuReport(available=False, gpus=self.gpus)
        self._stop.set()
        self._thread.join()
        self._sample()
        pynvml.nvmlShutdown()
        return GpuReport(
            available=True,
            gpus=self.gpus,
            active_gpu_s=round(self._active_s, 3),
            gpu_hours_allocated=len(self.gpus) * wall / 3600,
            samples=self._samples,
        )

    def __enter__(self) -> GpuSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._thread is not None and not self._stop.is_set():
            self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        for handle, baseline in zip(self._handles, self._baseline):
            try:
                busy = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu > 0
                busy = busy or pynvml.nvmlDeviceGetMemoryInfo(handle).used > baseline + self.margin_bytes
            except pynvml.NVMLError:
                continue
            self._active_s += dt if busy else 0.0
        self._samples += 1
