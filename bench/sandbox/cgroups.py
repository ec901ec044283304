"""Memory and process-count limits for the local sandbox, through a cgroup when this host allows one.

Why cgroups: rlimits cannot bound the memory of a process tree (RLIMIT_AS breaks PyTorch's large
virtual mappings) and RLIMIT_NPROC counts every process of the host user. A cgroup bounds the whole
tree the agent starts. The shell that starts bubblewrap enters the cgroup first and then `exec`s it, so
nothing the agent runs is ever outside. Where no cgroup can be made (no permission, no controller),
the sandbox still runs and its `limits` say so: these limits are "where the kernel allows".
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


@dataclass
class Cgroup:
    """One cgroup per sandbox: a folder per v1 controller, or one folder on the v2 hierarchy."""

    folders: list[Path]
    applied: dict = field(default_factory=dict)  # the limits set: memory_gb, pids

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run by a shell that first moves itself into every folder of this cgroup."""
        enter = "; ".join(f"echo $$ > {shlex.quote(str(f / 'cgroup.procs'))}" for f in self.folders)
        return ["sh", "-c", f'{enter} || exit 97; exec "$@"', "atebench-sandbox", *argv]

    def remove(self) -> None:
        for folder in self.folders:
            try:
                folder.rmdir()
            except OSError:
                pass  # processes still draining; an empty cgroup left behind holds no resources


def _v2_root() -> Path | None:
    for candidate in (ROOT, ROOT / "unified"):
        controllers = candidate / "cgroup.controllers"
        if controllers.is_file() and {"memory", "pids"} <= set(controllers.read_text().split()):
            return candidate
    return None


def create(name: str, memory_gb: float | None, pids: int | None) -> Cgroup | None:
    """A cgroup limiting memory and process count, or None where this host does not let us make one."""
    if not memory_gb and not pids:
        return None
    v2 = _v2_root()
    limits = {"memory_gb": memory_gb, "pids": pids}
    if v2 is not None:
        files = {"memory_gb": (v2 / name, "memory.max"), "pids": (v2 / name, "pids.max")}
    elif (ROOT / "memory" / "memory.limit_in_bytes").is_file() and (ROOT / "pids" / "cgroup.procs").is_file():
        files = {
            "memory_gb": (ROOT / "memory" / name, "memory.limit_in_bytes"),
            "pids": (ROOT / "pids" / name, "pids.max"),
        }
    else:
        return None
    group = Cgroup([])
    try:
        for key, (folder, limit_file) in files.items():
            if not limits[key]:
                continue
            if folder not in group.folders:
                folder.mkdir()
                group.folders.append(folder)
            value = int(limits[key] * 2**30) if key == "memory_gb" else int(limits[key])
            (folder / limit_file).write_text(str(value))
            group.applied[key] = limits[key]
    except OSError:
        group.remove()
        return None
    return group


def unavailable_note() -> str:
    uid = os.geteuid()
    return (
        f"no cgroup could be created under {ROOT} (uid {uid}); memory and process-count limits are not "
        "enforced in the local sandbox on this host (the docker sandbox enforces them)"
    )
