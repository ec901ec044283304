"""Building the docker base image never deletes through a mount (debootstrap leaves /proc mounted in
its rootfs when it fails), and leaves no mount behind."""

from __future__ import annotations

import os
import subprocess

import pytest

from bench.sandbox import images
from bench.sandbox.errors import SandboxError


@pytest.fixture
def mounted(tmp_path):
    """A tmpfs mounted inside a scratch tree, like /proc inside a debootstrap rootfs; unmounted after."""
    point = tmp_path / "rootfs" / "proc"
    point.mkdir(parents=True)
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "none", str(point)], capture_output=True).returncode
    ):
        pytest.skip("SKIPPED VISIBLY: mounting a tmpfs needs root with CAP_SYS_ADMIN")
    (point / "precious").write_text("outside the scratch tree's own file system")
    yield point
    if os.path.ismount(point):
        subprocess.run(["umount", "--lazy", str(point)], check=True)


def test_remove_tree_refuses_to_delete_through_a_mount(mounted, tmp_path):
    assert images.mounts_under(tmp_path / "rootfs") == [mounted]
    with pytest.raises(SandboxError, match=f"not deleting {tmp_path / 'rootfs'}: {mounted} is still mounted"):
        images.remove_tree(tmp_path / "rootfs")
    assert (mounted / "precious").read_text().startswith("outside"), "nothing behind the mount is touched"


def test_unmount_all_then_remove_tree_leaves_nothing(mounted, tmp_path):
    (tmp_path / "rootfs" / "etc").mkdir()
    images.unmount_all(tmp_path / "rootfs")
    assert not os.path.ismount(mounted) and images.mounts_under(tmp_path) == []
    images.remove_tree(tmp_path / "rootfs")
    assert not (tmp_path / "rootfs").exists()


def test_mount_points_with_spaces_are_found(tmp_path):
    point = tmp_path / "with space"
    point.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "none", str(point)], capture_output=True).returncode
    ):
        pytest.skip("SKIPPED VISIBLY: mounting a tmpfs needs root with CAP_SYS_ADMIN")
    try:
        assert images.mounts_under(tmp_path) == [point]
    finally:
        subprocess.run(["umount", "--lazy", str(point)], check=True)
