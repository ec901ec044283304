"""scripts/wheels_from_installed.py: a wheel mirror repacked from this interpreter's installed packages, for an
offline GPU host (Megatron's getting-started). Checked for real: the closure of a requirement with extras and
dependencies is found, the wheels install offline into a fresh venv with pip, the packages import from there,
an executable file keeps its executable bit, and a missing requirement stops with its name."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "wheels_from_installed.py"


def repack(folder: Path, *requirements: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(folder), *requirements], capture_output=True, text=True, timeout=300
    )


@pytest.mark.timeout(600)
def test_the_mirror_installs_offline_and_imports(tmp_path):
    proc = repack(tmp_path / "mirror", "pytest", "requests")
    assert proc.returncode == 0, proc.stderr
    names = {p.name.split("-")[0].lower() for p in (tmp_path / "mirror").glob("*.whl")}
    assert {"pytest", "pluggy", "iniconfig", "requests", "urllib3", "idna", "certifi"} <= names, names
    for wheel in (tmp_path / "mirror").glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            listed = zf.namelist()
            assert not [n for n in listed if "__pycache__" in n or n.endswith(("INSTALLER", "direct_url.json"))]
            record = next(n for n in listed if n.endswith(".dist-info/RECORD"))
            assert set(zf.read(record).decode().split("\n")[0].split(",")[0:1]) <= set(listed)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", "--no-cache-dir"]
    installed = subprocess.run(
        pip + ["--find-links", str(tmp_path / "mirror"), "pytest", "requests"],
        capture_output=True,
        text=True,
        timeout=300,
        # no PYTHONPATH: pip in the new venv would count a package found there as installed, and `-I` ignores it
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PIP_CONSTRAINT": ""},
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    probe = "import os, pytest, requests; print(os.path.realpath(pytest.__file__))"
    out = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().startswith(os.path.realpath(venv)), out.stdout + out.stderr


def test_executable_files_keep_their_mode(tmp_path):
    """triton ships ptxas as a file of its package: repacked without the mode bits, torch.compile could not run it.
    A stand-in distribution with an executable installs with the executable bit set."""
    site = tmp_path / "site"
    (site / "atebench_fake" / "bin").mkdir(parents=True)
    (site / "atebench_fake" / "__init__.py").write_text("")
    tool = site / "atebench_fake" / "bin" / "tool"
    tool.write_text("#!/bin/sh\necho tool\n")
    tool.chmod(0o755)
    info = site / "atebench_fake-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: atebench-fake\nVersion: 1.0\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    (info / "INSTALLER").write_text("pip\n")
    files = [
        "atebench_fake/__init__.py",
        "atebench_fake/bin/tool",
        *(f"{info.name}/{n}" for n in ("METADATA", "WHEEL")),
    ]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in [*files, f"{info.name}/INSTALLER", f"{info.name}/RECORD"]))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "mirror"), "atebench-fake"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert proc.returncode == 0, proc.stderr
    wheel = next((tmp_path / "mirror").glob("atebench_fake-1.0-py3-none-any.whl"))
    with zipfile.ZipFile(wheel) as zf:
        modes = {info.filename: info.external_attr >> 16 for info in zf.infolist()}
    assert modes["atebench_fake/bin/tool"] & 0o111, "the executable lost its mode"
    assert all(mode & 0o100000 for mode in modes.values()), "every entry is a regular file"
    assert not [name for name in modes if name.endswith("INSTALLER")]
    target = tmp_path / "target"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stderr
    assert os.access(target / "atebench_fake" / "bin" / "tool", os.X_OK)


def test_a_requirement_that_is_not_installed_is_named(tmp_path):
    proc = repack(tmp_path / "mirror", "no-such-package-atebench")
    assert proc.returncode != 0 and "no-such-package-atebench" in proc.stderr and "not installed" in proc.stderr
