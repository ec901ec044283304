"""Where a git-sourced framework's tree comes from: the pinned commit, or an offline copy proven equal to it.

Routes, in order:
1. the override (source.override_env, default ATEBENCH_SRC_<NAME>): a local clone or mirror. The pinned
   commit is fetched from it; a partial mirror whose object store lacks some blobs cannot serve a fetch, so
   when it is a work tree checked out at the pin, its files are exported instead, each checked against the
   commit's blob id (a changed file is refused, an absent one is named).
2. source.url, when it answers.
3. the source distribution (source.sdist, a pip requirement) when the URL does not answer and no override
   is set, or when ATEBENCH_SOURCE_ROUTE=sdist forces it. Every file it ships is checked against
   source.manifest, sha256 per path made from the real git tree at the pin; any difference refuses it.
   Files the git tree has and the sdist lacks (its own tests, scripts, configs) are named when the tree is
   built and by `missing_from(tree)`, so whatever needs them can skip and say why.

Why: machines without GitHub (CI, an air-gapped cluster) still get byte-identical framework code, and
nothing here silently swaps in different code.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

ROUTE_ENV = "ATEBENCH_SOURCE_ROUTE"
"""'sdist' forces the sdist route (to rehearse a machine without GitHub); 'git' forbids falling back to it."""
SDIST_ENV = "ATEBENCH_SDIST_{name}"
"""A local copy of the sdist (.tar.gz) to use instead of downloading it with pip."""
SDIST_METADATA = ("PKG-INFO", "setup.cfg")
"""Files every sdist adds that the git tree does not have; with <pkg>.egg-info/ they are left out."""
GIT_BLOB_PREFIX = "git:"
"""A manifest digest known only by its git blob id (the snapshot the manifest came from lacked the blob)."""


class SourceError(Exception):
    """The framework's source cannot be had, or an offline copy differs from the pin; says what and the fix."""


def _git(*args: str, cwd: Path, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if check and proc.returncode != 0:
        raise SourceError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# ---- choosing the route --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def url_answers(url: str, timeout: float = 30.0) -> bool:
    """Whether `git ls-remote` reaches the URL (asked once per process)."""
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--exit-code", url, "HEAD"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def route(framework) -> str:
    """'override', 'git' or 'sdist': where original_source takes this git-sourced framework's tree from."""
    forced = os.environ.get(ROUTE_ENV, "")
    if forced not in ("", "git", "sdist"):
        raise SourceError(f"{ROUTE_ENV}={forced!r}: use 'sdist' (force the offline route), 'git' or leave it unset")
    has_sdist = bool(framework.source.sdist)
    if forced == "sdist" and has_sdist:  # a framework without an sdist has no offline route to rehearse
        _announce(framework.name, f"{ROUTE_ENV}=sdist", framework.source.sdist)
        return "sdist"
    if framework.override_path() is not None:
        return "override"
    if forced == "git" or not has_sdist or url_answers(framework.source.url):
        return "git"
    _announce(framework.name, f"{framework.source.url} does not answer and no override is set", framework.source.sdist)
    return "sdist"


@functools.lru_cache(maxsize=None)
def _announce(name: str, why: str, sdist: str) -> None:
    """Once per process: the sdist route lacks the git-only files, and what needs them skips."""
    print(
        f"[atebench] {name}: {why}; using the sdist {sdist}, checked against its manifest. It lacks the "
        "git-only files (tests/, scripts/, train configs): whatever needs them skips and says so",
        file=sys.stderr,
    )


def version_suffix(framework) -> str:
    """Appended to the source version so the cache keeps an sdist tree apart from a full git tree."""
    return "-sdist" if framework.source.kind == "git" and route(framework) == "sdist" else ""


def fetch_tree(framework, dest: Path, fetch_git) -> None:
    """Fill dest (not existing yet) with the framework's source at the pin, by route(); `fetch_git(url, commit,
    dest)` is the plain git checkout (bench.workspace.fetch_git_source)."""
    from bench.workspace import WorkspaceError  # not at the top: bench.workspace imports this module

    commit = framework.source.commit
    chosen = route(framework)
    if chosen == "git":
        fetch_git(framework.source.url, commit, dest)
    elif chosen == "override":
        clone = framework.override_path()
        try:
            fetch_git(str(clone), commit, dest)
        except WorkspaceError as error:
            if not _is_checkout_at(clone, commit):
                raise SourceError(
                    f"{framework.name}: cannot fetch {commit} from {clone} ({error}); point "
                    f"{framework.source.override_env or 'the override'} at a clone that has it"
                ) from error
            shutil.rmtree(dest, ignore_errors=True)
            missing = export_checkout(clone, commit, dest)
            if missing:
                warnings.warn(
                    f"{framework.name}: {clone} lacks {len(missing)} file(s) of {commit[:12]} (not in its "
                    f"object store or work tree): {', '.join(missing[:5])}",
                    stacklevel=2,
                )
    else:
        manifest = framework.dir / framework.source.manifest
        missing = sdist_tree(framework, manifest, dest)
        print(
            f"[atebench] {framework.name}: source from the sdist {framework.source.sdist}, verified against "
            f"{manifest.name}; {len(missing)} git-only file(s) absent ({summarise(missing)})",
            file=sys.stderr,
        )


# ---- a local checkout whose object store is partial --------------------------------------------------


def _is_checkout_at(clone: Path, commit: str) -> bool:
    if not (clone / ".git").exists():
        return False
    head = _git("rev-parse", "HEAD", cwd=clone, check=False)
    return head.returncode == 0 and head.stdout.strip() == commit


def export_checkout(clone: Path, commit: str, dest: Path) -> list[str]:
    """Copy the files of `commit` from the work tree of `clone` into dest, each proven equal to its blob id;
    returns the paths of the commit the work tree lacks. A file that differs refuses the whole export."""
    listing = _git("ls-tree", "-r", "-z", commit, cwd=clone).stdout
    entries = []
    for item in listing.split("\0"):
        if not item:
            continue
        meta, path = item.split("\t", 1)
        mode, kind, blob = meta.split()
        if kind == "blob":
            entries.append((mode, blob, path))
    present = [(m, b, p) for m, b, p in entries if (clone / p).is_file() or (clone / p).is_symlink()]
    missing = sorted(p for m, b, p in entries if not ((clone / p).is_file() or (clone / p).is_symlink()))
    regular = [(m, b, p) for m, b, p in present if m != "120000"]
    hashed = _hash_objects(clone, [p for _, _, p in regular])
    changed = [p for (_, blob, p), got in zip(regular, hashed) if got != blob]
    for mode, blob, path in present:
        if mode == "120000":
            target = os.readlink(clone / path).encode()
            if hashlib.sha1(b"blob %d\0" % len(target) + target).hexdigest() != blob:
                changed.append(path)
    if changed:
        raise SourceError(
            f"{clone} is checked out at {commit[:12]} but {len(changed)} file(s) differ from it: "
            f"{', '.join(sorted(changed)[:8])}; run `git checkout -- .` there or use a clean clone"
        )
    dest.mkdir(parents=True)
    for mode, _, path in present:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            target.symlink_to(os.readlink(clone / path))
        else:
            target.write_bytes((clone / path).read_bytes())
            if mode == "100755":
                target.chmod(0o755)
    return missing


def _hash_objects(clone: Path, paths: list[str]) -> list[str]:
    proc = subprocess.run(
        ["git", "hash-object", "--no-filters", "--stdin-paths"],
        cwd=clone,
        capture_output=True,
        text=True,
        input="".join(p + "\n" for p in paths),
    )
    if proc.returncode != 0:
        raise SourceError(f"git hash-object failed in {clone}: {proc.stderr.strip()}")
    return proc.stdout.split()


# ---- manifest ------------------------------------------------------------------------------------


def make_manifest(clone: Path, commit: str, url: str) -> str:
    """The manifest text for `commit`: sha256 of every file, from the clone's objects (or its work tree
    where a blob is absent from the objects, checked against the blob id; "git:<blob id>" where neither has it)."""
    listing = _git("ls-tree", "-r", "-z", commit, cwd=clone).stdout
    lines = [
        f"# Files of {url} at {commit}: sha256, two spaces, path.",
        "# Made from the git tree, never from a download; 'git:<id>' = only the blob id is known.",
        f"commit {commit}",
    ]
    for item in listing.split("\0"):
        if not item:
            continue
        meta, path = item.split("\t", 1)
        _, kind, blob = meta.split()
        if kind != "blob":
            continue
        data = _git_blob(clone, blob)
        if data is None and (clone / path).is_file() and _hash_objects(clone, [path]) == [blob]:
            data = (clone / path).read_bytes()
        digest = hashlib.sha256(data).hexdigest() if data is not None else GIT_BLOB_PREFIX + blob
        lines.append(f"{digest}  {path}")
    return "\n".join(lines) + "\n"


def _git_blob(clone: Path, blob: str) -> bytes | None:
    proc = subprocess.run(["git", "cat-file", "blob", blob], cwd=clone, capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def read_manifest(path: Path, commit: str) -> dict[str, str]:
    """{path: digest}; refuses a manifest made for another commit or with a malformed line."""
    if not path.is_file():
        raise SourceError(
            f"source manifest {path} does not exist; make it from a real clone with "
            f"`python -m bench.sources manifest <clone> {commit} <url> > {path.name}`"
        )
    entries, stated = {}, None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        if line.startswith("commit "):
            stated = line.split()[1]
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or not rel or not (len(digest) == 64 or digest.startswith(GIT_BLOB_PREFIX)):
            raise SourceError(f"{path.name}:{number}: expected '<sha256>  <path>', got {line[:80]!r}")
        entries[rel] = digest
    if stated != commit:
        raise SourceError(
            f"{path.name} was made for commit {stated} but framework.toml pins {commit}; remake it "
            "from a clone at the pin"
        )
    return entries


# ---- the sdist route -----------------------------------------------------------------------------


def sdist_archive(framework) -> Path:
    """The sdist file: $ATEBENCH_SDIST_<NAME>, else downloaded with pip into the cache (once)."""
    var = SDIST_ENV.format(name=framework.name.upper().replace("-", "_"))
    if os.environ.get(var):
        path = Path(os.environ[var]).expanduser()
        if not path.is_file():
            raise SourceError(f"{var}={path} is not a file; point it at the downloaded sdist (.tar.gz)")
        return path
    from bench.workspace import cache_dir

    folder = cache_dir() / "sdists" / framework.source.sdist.replace("==", "-")
    found = sorted(folder.glob("*.tar.gz")) if folder.is_dir() else []
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(folder),
            framework.source.sdist,
        ],
        capture_output=True,
        text=True,
    )
    found = sorted(folder.glob("*.tar.gz"))
    if proc.returncode != 0 or not found:
        raise SourceError(
            f"{framework.name}: {framework.source.url} is unreachable and `pip download "
            f"{framework.source.sdist}` failed: {(proc.stderr or proc.stdout).strip()[-500:]}; set "
            f"{var} to a downloaded copy or the override variable to a clone"
        )
    return found[0]


def sdist_tree(framework, manifest: Path, dest: Path, archive: Path | None = None) -> list[str]:
    """Unpack the sdist into dest after proving every file it ships equal to the manifest; returns the
    manifest's paths the sdist lacks (the git-only files)."""
    expected = read_manifest(manifest, framework.source.commit)
    archive = archive or sdist_archive(framework)
    files: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) < 2 or not parts[1] or member.isdir():
                continue
            rel = parts[1]
            if rel in SDIST_METADATA or rel.split("/", 1)[0].endswith(".egg-info"):
                continue
            if not member.isfile():
                raise SourceError(f"{archive.name}: {rel} is not a regular file; refusing the sdist")
            files[rel] = tar.extractfile(member).read()
    unknown = sorted(rel for rel in files if rel not in expected)
    differ = sorted(
        rel for rel, data in files.items() if rel in expected and hashlib.sha256(data).hexdigest() != expected[rel]
    )
    if unknown or differ:
        raise SourceError(
            f"{archive.name} is not the pinned commit {framework.source.commit[:12]}: "
            f"{len(differ)} file(s) differ from {manifest.name} ({', '.join(differ[:5])}), "
            f"{len(unknown)} are not in the git tree ({', '.join(unknown[:5])}); refusing it. "
            "Use a git clone (the override variable) or fix source.sdist"
        )
    dest.mkdir(parents=True)
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return sorted(rel for rel in expected if rel not in files)


def missing_from(framework, tree: Path) -> list[str]:
    """The manifest's paths absent from a source tree: what a part needing git-only files must skip on."""
    if not framework.source.manifest:
        return []
    expected = read_manifest(framework.dir / framework.source.manifest, framework.source.commit)
    return sorted(rel for rel in expected if not (tree / rel).exists())


def summarise(paths: list[str], depth: int = 1, shown: int = 6) -> str:
    """'tests/ (38), scripts/ (12), … and 9 more' : the top folders of a path list, with counts."""
    counts: dict[str, int] = {}
    for path in paths:
        parts = path.split("/")
        key = "/".join(parts[:depth]) + ("/" if len(parts) > depth else "")
        counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{key} ({n})" for key, n in ranked[:shown]) or "none"
    return text + (f" and {len(ranked) - shown} more" if len(ranked) > shown else "")


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "manifest":
        sys.stdout.write(make_manifest(Path(argv[1]), argv[2], argv[3]))
        return 0
    print("usage: python -m bench.sources manifest <clone> <commit> <url>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


# ---- wrong solutions of frameworks whose code this repository must not hold ------------------------

ON_GOLD_SUFFIX = ".on-gold.patch"
"""A wrong/*.on-gold.patch is a small edit of the GOLD tree, not a patch on the prepared tree: a full wrong
solution would carry the framework's removed code, which this repository does not hold."""


def wrong_solution(variant, prepared: Path, original: Path) -> str:
    """The task's wrong solution as a patch on the prepared tree (what the `wrong` agent applies); `prepared`
    and `original` are the trial's trees (its Workspace)."""
    path = variant.wrong_patch
    if not path.name.endswith(ON_GOLD_SUFFIX):
        return path.read_text()
    from bench import workspace

    with tempfile.TemporaryDirectory(prefix="atebench-wrong-") as scratch:
        tree = Path(scratch) / "tree"
        workspace.copy_clean(prepared, tree)
        _git("init", "-q", cwd=tree)  # so git apply works on this tree, never on a repository around it
        for name, patch in (
            ("gold", workspace.solution_diff(variant, prepared, original)),
            (path.name, path.read_text()),
        ):
            (Path(scratch) / "edit.patch").write_text(patch)
            proc = subprocess.run(
                ["git", "apply", "--whitespace=nowarn", str(Path(scratch) / "edit.patch")],
                cwd=tree,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise SourceError(
                    f"{variant.dir.name}: {name} does not apply to the prepared tree plus gold: "
                    f"{proc.stderr.strip()[-1500:]}; remake {path.name} against the gold tree"
                )
        return workspace.tree_diff(prepared, tree).patch
