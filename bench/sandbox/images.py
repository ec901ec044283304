"""Docker images built here, never pulled: the Debian base image and one image per framework.

Why: sandbox hosts may have no registry access, and a pulled tag can change under a benchmark. The base
image is a debootstrap'ed Debian (minbase + python3, pytest, git) imported as `atebench/base`; a
framework image is its Dockerfile built on top, tagged by a hash of the Dockerfile and its inputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.sandbox.errors import SandboxError

BASE_IMAGE = "atebench/base:bookworm"
BASE_PACKAGES = ("python3", "python3-pip", "python3-pytest", "git", "ca-certificates", "procps")


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
        raise SandboxError(f"docker image {BASE_IMAGE} is missing and debootstrap is not installed to build it; "
                           "run .ci/setup-docker.sh (installs debootstrap) or apt-get install debootstrap")
    log(f"building {BASE_IMAGE} with debootstrap (once per host, about a minute)")
    with tempfile.TemporaryDirectory(prefix="atebench-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                               "bookworm", str(rootfs)], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SandboxError(f"debootstrap failed (exit {proc.returncode}); it needs root and the Debian "
                               f"registry:\n{(proc.stdout + proc.stderr)[-3000:]}")
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "-c", "ENV LANG=C.UTF-8", "-", BASE_IMAGE],
                                  stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        if imported.returncode != 0:
            raise SandboxError(f"docker import of the base image failed: {imported.stderr.strip()}")
    return BASE_IMAGE


def wheels_dir() -> Path | None:
    """Wheels offered to framework Dockerfiles (containers have no network): $ATEBENCH_WHEELS or .whl/."""
    from bench.specs import REPO_ROOT

    folder = Path(os.environ.get("ATEBENCH_WHEELS") or REPO_ROOT / ".whl")
    return folder if folder.is_dir() else None


def ensure_framework_image(client, name: str, dockerfile: Path, log=print) -> str:
    """Build the framework's Dockerfile (FROM atebench/base...) with a context of the Dockerfile's folder
    plus `wheels/`; the tag is a hash of those inputs, so a changed Dockerfile rebuilds."""
    if not dockerfile.is_file():
        raise SandboxError(f"framework {name!r}: Dockerfile {dockerfile} not found; fix sandbox.dockerfile in its framework.toml")
    ensure_base_image(client, log)
    wheels = wheels_dir()
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
        for wheel in (wheels.glob("*.whl") if wheels else []):
            os.link(wheel, context / "wheels" / wheel.name) if _same_fs(wheel, context) else shutil.copy2(wheel, context / "wheels")
        import docker

        try:
            client.images.build(path=str(context), dockerfile=dockerfile.name, tag=tag, rm=True, network_mode="none")
        except docker.errors.BuildError as e:
            lines = "".join(item.get("stream", "") or item.get("error", "") for item in e.build_log)
            raise SandboxError(f"building {tag} from {dockerfile} failed: {e.msg}\n{lines[-3000:]}") from None
    return tag


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev
