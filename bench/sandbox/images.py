"""Docker images built here, never pulled: the Debian base image and one image per framework.

Why: sandbox hosts may have no registry access, and a pulled tag can change under a benchmark. The base
image is a debootstrap'ed Debian (minbase + python3, pytest, git) imported as `atebench/base`; a
framework image is its Dockerfile built on top, tagged by a hash of the Dockerfile and its inputs.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.sandbox.errors import SandboxError

BASE_IMAGE = "atebench/base:bookworm"
BASE_PACKAGES = ("python3", "python3-pip", "python3-pytest", "git", "ca-certificates", "procps")
BASE_PYTHON = "3.11"  # Debian bookworm's python3: the wheels downloaded for framework images target it
MANYLINUX_TAGS = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux1")


def has_image(client, name: str) -> bool:
    import docker

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_base_image(client, log=print) -> str:
    """Build `atebench/base` with debootstrap if it is missing (about a minute, once per host)."""
    if has_image(client, BASE_IMAGE):
        return BASE_IMAGE
    if shutil.which("debootstrap") is None:
        raise SandboxError(
            f"docker image {BASE_IMAGE} is missing and debootstrap is not installed to build it; "
            "run .ci/setup-docker.sh (installs debootstrap) or apt-get install debootstrap"
        )
    log(f"building {BASE_IMAGE} with debootstrap (once per host, about a minute)")
    scratch = Path(tempfile.mkdtemp(prefix="atebench-rootfs-"))
    try:
        rootfs = scratch / "rootfs"
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "bookworm", str(rootfs)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        unmount_all(rootfs)  # debootstrap mounts /proc and /sys inside the rootfs and leaves them on failure
        if proc.returncode != 0:
            raise SandboxError(
                f"debootstrap failed (exit {proc.returncode}); it needs root and the Debian "
                f"registry:\n{(proc.stdout + proc.stderr)[-3000:]}"
            )
        remove_tree(rootfs / "var" / "cache" / "apt" / "archives")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--one-file-system", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-c", "ENV LANG=C.UTF-8", "-", BASE_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        tar.wait()
        if imported.returncode != 0:
            raise SandboxError(f"docker import of the base image failed: {imported.stderr.strip()}")
    finally:
        unmount_all(scratch)
        remove_tree(scratch)
    return BASE_IMAGE


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root` (from /proc/self/mountinfo), deepest first."""
    root = Path(os.path.realpath(root))
    info = Path("/proc/self/mountinfo")
    found = []
    for line in info.read_text().splitlines() if info.is_file() else []:
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]))
        if point == root or root in point.parents:
            found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_all(root: Path) -> None:
    """Unmount everything mounted at or below `root`, deepest first; a mount that stays is reported by
    remove_tree, which then refuses to delete."""
    for point in mounts_under(root):
        subprocess.run(["umount", str(point)], capture_output=True)
        if os.path.ismount(point):
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True)


def remove_tree(root: Path) -> None:
    """Delete a scratch tree, never through a mount: with a mount still below it nothing is deleted.

    Why: a rootfs can hold a live /proc or a bind mount of a host folder; rmtree through it would
    delete (or try to delete) host files.
    """
    if not root.exists() and not root.is_symlink():
        return
    mounted = mounts_under(root)
    if mounted:
        raise SandboxError(
            f"not deleting {root}: {', '.join(map(str, mounted))} is still mounted there; "
            f"unmount it (umount PATH) and delete {root} by hand"
        )
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(root)], check=True, capture_output=True)


def missing_wheels(folder: Path, requirements: list[str]) -> list[str]:
    """The requirements (`name`, `name==1.2`, `name[extra]>=1`) no wheel in `folder` is named for. Names compare
    as wheel files spell them: lower case, runs of `-_.` as one `_`. Versions are pip's business."""

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "_", name).lower()

    present = {normal(wheel.name.split("-", 1)[0]) for wheel in folder.glob("*.whl")}
    names = [re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0] for requirement in requirements]
    return [name for name in names if name and normal(name) not in present]


def wheels_dir(requirements: list[str], log=print, python: str = BASE_PYTHON) -> Path | None:
    """Wheels of `requirements` for CPython `python` ("3.11"): $ATEBENCH_WHEELS (an offline folder) when set,
    else downloaded once on this host and cached. The docker images install them (the base image's Python);
    a task with [resources] python = "bare" offers them to its agent (bench/sandbox/bare.py, this host's)."""
    if os.environ.get("ATEBENCH_WHEELS"):
        folder = Path(os.environ["ATEBENCH_WHEELS"])
        if not folder.is_dir():
            raise SandboxError(
                f"ATEBENCH_WHEELS={folder} is not a folder; point it at a folder of .whl files or unset it"
            )
        missing = missing_wheels(folder, requirements)
        if missing:
            raise SandboxError(
                f"ATEBENCH_WHEELS={folder} has no wheel of {', '.join(missing)} (needed: {', '.join(requirements)}); "
                "add them (`pip download --only-binary=:all: -d <folder> ...`) or unset it"
            )
        return folder
    if not requirements:
        return None
    from bench.workspace import cache_dir

    key = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:12]
    folder = cache_dir() / "wheels" / f"py{python}-{platform.machine()}-{key}"
    if (folder / ".complete").is_file():
        return folder
    log(f"downloading wheels for Python {python} ({', '.join(requirements)})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wheels-", dir=folder.parent))
    tags = [arg for tag in MANYLINUX_TAGS for arg in ("--platform", f"{tag}_{platform.machine()}")]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            python,
            *tags,
            "--dest",
            str(staging),
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise SandboxError(
            f"could not download wheels for Python {python} ({', '.join(requirements)}); the host needs "
            f"the package registry, or set ATEBENCH_WHEELS to a folder of wheels:\n{proc.stderr[-3000:]}"
        )
    (staging / ".complete").write_text("\n".join(requirements) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def ensure_framework_image(client, name: str, dockerfile: Path, requirements: list[str] = (), log=print) -> str:
    """Build the framework's Dockerfile (FROM atebench/base...) with a context of the Dockerfile's folder
    plus `wheels/`; the tag is a hash of those inputs, so a changed Dockerfile rebuilds."""
    if not dockerfile.is_file():
        raise SandboxError(
            f"framework {name!r}: Dockerfile {dockerfile} not found; fix sandbox.dockerfile in its framework.toml"
        )
    ensure_base_image(client, log)
    wheels = wheels_dir(list(requirements), log)
    digest = hashlib.sha256(dockerfile.read_bytes())
    for folder in [dockerfile.parent] + ([wheels] if wheels else []):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
    tag = f"atebench/{name}:{digest.hexdigest()[:12]}"
    if has_image(client, tag):
        return tag
    log(f"building docker image {tag} from {dockerfile.name}")
    with tempfile.TemporaryDirectory(prefix="atebench-ctx-") as scratch:
        context = Path(scratch)
        shutil.copytree(dockerfile.parent, context, dirs_exist_ok=True)
        (context / "wheels").mkdir(exist_ok=True)
        for wheel in wheels.glob("*.whl") if wheels else []:
            os.link(wheel, context / "wheels" / wheel.name) if _same_fs(wheel, context) else shutil.copy2(
                wheel, context / "wheels"
            )
        import docker

        try:
            client.images.build(path=str(context), dockerfile=dockerfile.name, tag=tag, rm=True, network_mode="none")
        except docker.errors.BuildError as e:
            lines = "".join(item.get("stream", "") or item.get("error", "") for item in e.build_log)
            raise SandboxError(f"building {tag} from {dockerfile} failed: {e.msg}\n{lines[-3000:]}") from None
    return tag


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev
