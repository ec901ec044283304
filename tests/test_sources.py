"""Source routes of git frameworks (bench/sources.py): the sdist checked against a manifest of the git tree,
a local checkout whose object store lacks blobs, and the route choice. Small fake trees, no network."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from bench import sources, specs, workspace
from bench.specs import FrameworkSpec, Source

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GIT_FILES = {
    "pkg/__init__.py": b"X = 1\n",
    "pkg/core.py": b"def f():\n    return 2\n",
    "tests/test_core.py": b"def test_f():\n    pass\n",
    "README.md": b"readme\n",
}


def manifest_text(files: dict[str, bytes], commit: str = COMMIT) -> str:
    lines = ["# test manifest", f"commit {commit}"]
    lines += [f"{hashlib.sha256(data).hexdigest()}  {rel}" for rel, data in sorted(files.items())]
    return "\n".join(lines) + "\n"


def make_sdist(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in {
            **files,
            "PKG-INFO": b"Name: fake\n",
            "setup.cfg": b"",
            "fake.egg-info/SOURCES.txt": b"pkg/core.py\n",
        }.items():
            info = tarfile.TarInfo(f"fake-1.0/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def fake_framework(folder: Path, url: str = "file:///nonexistent/fake.git") -> FrameworkSpec:
    (folder / "source-manifest.txt").write_text(manifest_text(GIT_FILES))
    return FrameworkSpec(
        name="fake",
        source=Source(kind="git", url=url, commit=COMMIT, sdist="fake==1.0", manifest="source-manifest.txt"),
        dir=folder,
    )


def test_torchtitan_spec_pins_the_release_and_its_manifest_matches_the_pin():
    framework = specs.load_framework("torchtitan")
    assert framework.source.commit == "73a0e6979dd10b6b1904098eb3c8f62c18ab87ce"
    assert framework.source.sdist == "torchtitan==0.2.2"
    entries = sources.read_manifest(framework.dir / framework.source.manifest, framework.source.commit)
    assert "torchtitan/models/qwen3/model/model.py" in entries and "run_train.sh" in entries
    assert len(entries) > 300


def test_sdist_needs_a_manifest_and_a_git_source():
    with pytest.raises(ValueError, match="sdist and source.manifest go together"):
        Source(kind="git", url="u", commit=COMMIT, sdist="fake==1.0")


def test_sdist_matching_the_manifest_gives_its_files_and_names_the_git_only_ones(tmp_path):
    framework = fake_framework(tmp_path)
    shipped = {k: v for k, v in GIT_FILES.items() if not k.startswith("tests/")}
    missing = sources.sdist_tree(
        framework,
        tmp_path / "source-manifest.txt",
        tmp_path / "tree",
        archive=make_sdist(tmp_path / "fake-1.0.tar.gz", shipped),
    )
    assert missing == ["tests/test_core.py"]
    assert sorted(
        p.relative_to(tmp_path / "tree").as_posix() for p in (tmp_path / "tree").rglob("*") if p.is_file()
    ) == sorted(shipped)
    assert sources.missing_from(framework, tmp_path / "tree") == ["tests/test_core.py"]


def test_sdist_with_a_changed_file_is_refused_naming_it(tmp_path):
    framework = fake_framework(tmp_path)
    changed = {**GIT_FILES, "pkg/core.py": b"def f():\n    return 3\n"}
    with pytest.raises(sources.SourceError, match=r"1 file\(s\) differ .*pkg/core.py"):
        sources.sdist_tree(
            framework,
            tmp_path / "source-manifest.txt",
            tmp_path / "tree",
            archive=make_sdist(tmp_path / "fake-1.0.tar.gz", changed),
        )
    assert not (tmp_path / "tree").exists()


def test_sdist_with_a_file_the_git_tree_lacks_is_refused(tmp_path):
    framework = fake_framework(tmp_path)
    with pytest.raises(sources.SourceError, match=r"1 are not in the git tree \(pkg/extra.py\)"):
        sources.sdist_tree(
            framework,
            tmp_path / "source-manifest.txt",
            tmp_path / "tree",
            archive=make_sdist(tmp_path / "fake-1.0.tar.gz", {**GIT_FILES, "pkg/extra.py": b""}),
        )


def test_manifest_of_another_commit_is_refused(tmp_path):
    (tmp_path / "m.txt").write_text(manifest_text(GIT_FILES, commit="f" * 40))
    with pytest.raises(sources.SourceError, match="made for commit f+ but framework.toml pins"):
        sources.read_manifest(tmp_path / "m.txt", COMMIT)


def test_route_follows_the_override_the_url_and_the_forcing_variable(tmp_path, monkeypatch):
    framework = fake_framework(tmp_path)
    monkeypatch.delenv(sources.ROUTE_ENV, raising=False)
    monkeypatch.delenv("ATEBENCH_SRC_FAKE", raising=False)
    assert sources.route(framework) == "sdist"  # the URL does not answer and there is no override
    monkeypatch.setenv(sources.ROUTE_ENV, "git")
    assert sources.route(framework) == "git"
    monkeypatch.setenv(sources.ROUTE_ENV, "sdist")
    monkeypatch.setenv("ATEBENCH_SRC_FAKE", str(tmp_path))
    assert sources.route(framework) == "sdist"
    monkeypatch.delenv(sources.ROUTE_ENV)
    assert sources.route(framework) == "override"
    monkeypatch.setenv(sources.ROUTE_ENV, "offline")
    with pytest.raises(sources.SourceError, match="use 'sdist'"):
        sources.route(framework)


def test_original_source_by_the_sdist_route_is_cached_apart(tmp_path, monkeypatch):
    framework = fake_framework(tmp_path)
    archive = make_sdist(tmp_path / "fake-1.0.tar.gz", {k: v for k, v in GIT_FILES.items() if k != "README.md"})
    monkeypatch.setenv(sources.ROUTE_ENV, "sdist")
    monkeypatch.setenv("ATEBENCH_SDIST_FAKE", str(archive))
    assert workspace.source_version(framework) == COMMIT[:12] + "-sdist"
    tree = workspace.original_source(framework, cache=tmp_path / "cache")
    assert tree.name.endswith("-sdist") and (tree / "pkg/core.py").read_bytes() == GIT_FILES["pkg/core.py"]
    assert not (tree / "README.md").exists()


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_checkout_export_checks_every_file_and_names_absent_ones(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    _git(clone, "init", "-q")
    for rel, data in GIT_FILES.items():
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_bytes(data)
    _git(clone, "add", "-A")
    _git(clone, "commit", "-qm", "pin")
    commit = _git(clone, "rev-parse", "HEAD")
    (clone / "tests/test_core.py").unlink()  # as a mirror that lacks a blob leaves it
    assert sources.export_checkout(clone, commit, tmp_path / "out") == ["tests/test_core.py"]
    assert (tmp_path / "out/pkg/core.py").read_bytes() == GIT_FILES["pkg/core.py"]
    (clone / "pkg/core.py").write_bytes(b"changed\n")
    with pytest.raises(sources.SourceError, match=r"1 file\(s\) differ from it: pkg/core.py"):
        sources.export_checkout(clone, commit, tmp_path / "out2")


def test_manifest_made_from_a_clone_reads_back(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    _git(clone, "init", "-q")
    (clone / "a.txt").write_bytes(b"a\n")
    _git(clone, "add", "-A")
    _git(clone, "commit", "-qm", "pin")
    commit = _git(clone, "rev-parse", "HEAD")
    (tmp_path / "m.txt").write_text(sources.make_manifest(clone, commit, "file://clone"))
    assert sources.read_manifest(tmp_path / "m.txt", commit) == {"a.txt": hashlib.sha256(b"a\n").hexdigest()}
