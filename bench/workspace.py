"""Trial workspaces: a framework checkout, prepared for one task, with a single baseline commit.

Why a single commit and no hidden tests: the agent must not mine history or read the grader. Why a
cache: preparing a big checkout takes long, and every trial of the same task must start from the
identical tree, so prepared checkouts are kept keyed by source version and preparation hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from bench import sources
from bench.specs import FrameworkSpec, TaskVariant, fingerprint

PREPARE_KIT = Path(__file__).with_name("prepare_kit.py")  # imported by prepare.py scripts
# .venv: a virtual environment an agent built in its tree (getting-started asks for one) is a build output, like
# the caches: 1 GB of installed packages that would swamp agent.diff and be read as agent code by grading's
# checks (site-packages hold test files, .pth files and pytest's own names). A grader that needs it rebuilds it.
CLEAN_PATTERNS = (
    ".git",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    "*.egg-info",
    ".mypy_cache",
    ".ruff_cache",
    ".venv",
)
GIT_IDENTITY = ["-c", "user.name=atebench", "-c", "user.email=atebench@localhost", "-c", "commit.gpgsign=false"]


class WorkspaceError(Exception):
    """Preparing a workspace failed; the message says which step and shows its output."""


def cache_dir() -> Path:
    """Outside the repository so big clones never end up in it: $ATEBENCH_CACHE or ~/.cache/atebench."""
    return Path(os.environ.get("ATEBENCH_CACHE") or Path.home() / ".cache" / "atebench")


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


MAX_DIFF_FILE_BYTES = 20 * 1024 * 1024  # a bigger file is left out of agent.diff (with a note), still graded
MAX_DIFF_TOTAL_BYTES = 256 * 1024 * 1024  # past this, further files are left out of agent.diff too


MAX_DEPTH = 64  # folders below this many levels are left out of every copy: no checkout is deeper, an attack may be


def copy_clean(
    src: Path, dest: Path, max_file_bytes: int | None = None, max_total_bytes: int | None = None
) -> list[str]:
    """Copy a tree without VCS metadata and caches. Symlinks are copied as links, never followed; FIFOs,
    sockets and devices are skipped (opening an agent's FIFO would hang the runner), and so are regular
    files over `max_file_bytes` or past `max_total_bytes` copied, folders deeper than MAX_DEPTH and folders
    the runner cannot read. Returns the skipped paths, relative to `src`.

    The walk keeps its own stack: an agent's tree thousands of folders deep must not end the runner in a
    RecursionError (shutil.copytree recurses)."""
    ignored = shutil.ignore_patterns(*CLEAN_PATTERNS)
    skipped: list[str] = []
    copied = 0
    dest.mkdir(parents=True, exist_ok=True)
    stack = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        folder = os.path.join(src, rel) if rel else os.fspath(src)
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            skipped.append(rel)
            continue
        drop = ignored(folder, [e.name for e in entries])
        for entry in entries:
            if entry.name in drop:
                continue
            child = os.path.join(rel, entry.name) if rel else entry.name
            target = os.path.join(dest, child)
            if entry.is_symlink():
                if os.path.lexists(target):
                    os.unlink(target)
                os.symlink(os.readlink(entry.path), target)
            elif entry.is_dir(follow_symlinks=False):
                if depth + 1 > MAX_DEPTH:
                    skipped.append(child)
                    continue
                if os.path.lexists(os.path.join(entry.path, "pyvenv.cfg")):
                    continue  # a virtual environment under any name: a build output, as .venv (CLEAN_PATTERNS)
                os.makedirs(target, exist_ok=True)
                stack.append((child, depth + 1))
            else:
                info = entry.stat(follow_symlinks=False)
                too_big = max_file_bytes is not None and info.st_size > max_file_bytes
                too_much = max_total_bytes is not None and copied + info.st_size > max_total_bytes
                if not stat.S_ISREG(info.st_mode) or too_big or too_much:
                    skipped.append(child)
                    continue
                try:
                    shutil.copy2(entry.path, target, follow_symlinks=False)
                except PermissionError:  # a file the runner may not read (an agent's chmod 000, runner not root)
                    skipped.append(child)
                    continue
                copied += info.st_size
    return sorted(skipped)


def remove_tree(path: Path) -> None:
    """Remove a tree an agent wrote into, whatever it made there: folders thousands of levels deep (shutil.rmtree
    recurses), folders without read or execute permission. `rm -rf` walks without recursion; the chmod first
    gives back what the agent took away. What still cannot be removed is warned about, never raised."""
    if not os.path.lexists(path):
        return
    subprocess.run(["chmod", "-R", "u+rwX", "--", str(path)], capture_output=True)
    proc = subprocess.run(["rm", "-rf", "--", str(path)], capture_output=True, text=True)
    if os.path.lexists(path):
        warnings.warn(f"could not remove {path}: {proc.stderr.strip()[-500:]}", stacklevel=2)


def place_file(source: Path, tree: Path, rel: str) -> Path:
    """Copy `source` to tree/rel, where `tree` is a tree the agent controlled: no symlink the agent left on
    the way (a folder or the file itself pointing outside, say at a host file) is ever followed; each is
    replaced by a real folder or file first. Every write the runner makes into an agent's tree goes here."""
    target = tree
    parts = Path(rel).parts
    for part in parts[:-1]:
        target = target / part
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        target.mkdir(exist_ok=True)
    target = target / parts[-1]
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    shutil.copy2(source, target, follow_symlinks=False)
    return target


def place_tree(source: Path, tree: Path, rel: str) -> list[str]:
    """place_file for every file below `source` (caches skipped), at tree/rel/...; returns the paths placed."""
    placed = []
    for path in sorted(
        p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ):
        inner = (Path(rel) / path.relative_to(source)).as_posix()
        place_file(path, tree, inner)
        placed.append(inner)
    return placed


def remove_caches(tree: Path) -> None:
    for pattern in CLEAN_PATTERNS:
        for path in sorted(tree.rglob(pattern), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()


def hash_tree(tree: Path, skip: tuple[str, ...] = ()) -> str:
    return fingerprint(tree, skip)[:16]


# ---- the framework's original source ---------------------------------------------------------------


def bundled_files(folder: Path) -> list[Path]:
    """The files git would ship from a bundled folder (tracked or untracked-but-not-ignored)."""
    proc = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z", "--", "."], cwd=folder, capture_output=True, text=True
    )
    if proc.returncode != 0:
        return [
            p.relative_to(folder)
            for p in folder.rglob("*")
            if p.is_file() and not any(part in (".git", "__pycache__") for part in p.relative_to(folder).parts)
        ]
    return [Path(name) for name in proc.stdout.split("\0") if name and (folder / name).is_file()]


def source_version(framework: FrameworkSpec) -> str:
    """A short id that changes whenever the framework's source changes."""
    if framework.source.kind == "git":
        return framework.source.commit[:12] + sources.version_suffix(framework)
    folder = framework.bundled_path()
    digest = hashlib.sha256()
    for rel in sorted(bundled_files(folder)):
        digest.update(rel.as_posix().encode() + b"\0" + (folder / rel).read_bytes() + b"\0")
    return "b" + digest.hexdigest()[:15]


def fetch_git_source(url: str, commit: str, dest: Path) -> None:
    """Check out exactly `commit` of `url` into dest, shallow when the server allows it."""
    dest.mkdir(parents=True)
    git("init", "-q", cwd=dest)
    if git("fetch", "-q", "--depth", "1", url, commit, cwd=dest, check=False).returncode != 0:
        git("fetch", "-q", url, cwd=dest)
    git("checkout", "-q", "--detach", commit, cwd=dest)
    head = git("rev-parse", "HEAD", cwd=dest).stdout.strip()
    if head != commit:
        raise WorkspaceError(f"checked out {head} from {url} but the spec pins {commit}")


def original_source(framework: FrameworkSpec, cache: Path | None = None, version: str | None = None) -> Path:
    """A clean copy of the unmodified framework source, cached. `version`: source_version(framework) when
    the caller has it already (hashing a bundled source reads every file)."""
    cache = cache or cache_dir()
    target = cache / "sources" / f"{framework.name}-{version or source_version(framework)}"
    if _verified(target):
        return target
    staging = Path(tempfile.mkdtemp(prefix=f".{framework.name}-", dir=_ensure(cache / "sources")))
    tree = staging / "tree"
    if framework.source.kind == "git":
        sources.fetch_tree(framework, tree, fetch_git_source)
        remove_caches(tree)
    else:
        folder = framework.bundled_path()
        if not folder.is_dir():
            raise WorkspaceError(
                f"framework {framework.name!r}: bundled source folder {folder} does not exist; "
                "fix source.path in its framework.toml"
            )
        for rel in bundled_files(folder):
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / rel, tree / rel)
        tree.mkdir(exist_ok=True)
    _publish(tree, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _publish(tree: Path, target: Path) -> None:
    """Rename into place with a content hash beside it; a concurrent trial that got there first wins."""
    digest = hash_tree(tree)
    try:
        tree.rename(target)
    except OSError:
        if not target.is_dir():
            raise
        return
    _manifest(target).write_text(digest + "\n")


def _manifest(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _verified(target: Path) -> bool:
    """True when a cached tree is still byte-identical to what was published; a changed one is removed.

    Why: every trial starts from and is graded against these trees. A trial must not be able to change
    them for the next one (an unisolated agent could write there), so each use checks the content hash."""
    if not target.is_dir():
        return False
    manifest = _manifest(target)
    if manifest.is_file() and manifest.read_text().strip() == hash_tree(target):
        return True
    warnings.warn(
        f"cache entry {target.name} was changed after it was built (or has no hash); rebuilding it", stacklevel=3
    )
    shutil.rmtree(target, ignore_errors=True)
    manifest.unlink(missing_ok=True)
    return False


# ---- preparation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """One trial's trees, computed once by `prepare`: every later phase (agent, grading, throughput) takes
    its trees from here instead of re-deriving them (each derivation hashes the source and the cache)."""

    original: Path
    """The unmodified framework source (cached, read-only): grading and throughput restore files from it."""
    prepared: Path
    """The checkout the agent starts from (cached, read-only): the baseline of the diff and of grading."""
    work: Path
    """This trial's copy of `prepared`, one baseline commit; the agent changes it."""
    source_version: str
    """source_version(framework): the cache key of `original`."""
    prepared_key: str
    """prepared_key(...): the cache key of `prepared`."""


def prepare(variant: TaskVariant, framework: FrameworkSpec, dest: Path, cache: Path | None = None) -> Workspace:
    """The trial's trees: the original source, the prepared checkout (both cached) and a fresh working
    tree at `dest`. Each cache key and each cache check is computed once here."""
    cache = cache or cache_dir()
    version = source_version(framework)
    original = original_source(framework, cache, version)
    key = prepared_key(variant, framework, version)
    prepared = _prepared(variant, framework, cache, key, original)
    return Workspace(
        original=original,
        prepared=prepared,
        work=_working_tree(prepared, dest),
        source_version=version,
        prepared_key=key,
    )


def prepared_key(variant: TaskVariant, framework: FrameworkSpec, version: str) -> str:
    """Changes when the source, the task's preparation (anything in its folder but tests/ and wrong/, and
    bench/prepare_kit.py, which prepare.py imports) or the hidden test paths change."""
    return hashlib.sha256(
        "\0".join(
            [
                framework.name,
                version,
                hash_tree(variant.dir, skip=("tests", "wrong")),
                hashlib.sha256(PREPARE_KIT.read_bytes()).hexdigest(),
                *variant.hidden_test_paths(),
            ]
        ).encode()
    ).hexdigest()[:16]


def prepared_checkout(variant: TaskVariant, framework: FrameworkSpec, cache: Path | None = None) -> Path:
    """The original source with the task's preparation applied and hidden tests removed, cached."""
    cache = cache or cache_dir()
    version = source_version(framework)
    return _prepared(variant, framework, cache, prepared_key(variant, framework, version), None, version)


def _prepared(
    variant: TaskVariant,
    framework: FrameworkSpec,
    cache: Path,
    key: str,
    original: Path | None,
    version: str | None = None,
) -> Path:
    target = cache / "prepared" / f"{variant.task.id.replace('/', '__')}-{framework.name}-{key}"
    if _verified(target):
        return target
    staging = Path(tempfile.mkdtemp(prefix=".prep-", dir=_ensure(cache / "prepared")))
    tree = staging / "tree"
    copy_clean(original or original_source(framework, cache, version), tree)
    run_prepare(variant, tree)
    for rel in variant.hidden_test_paths():
        (tree / rel).unlink(missing_ok=True)
    remove_caches(tree)
    _publish(tree, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _with_harness_on_path() -> str:
    """PYTHONPATH for prepare.py: this harness's root first, so `import bench.prepare_kit` works from a
    plain checkout too (a fresh clone run as `python runner.py`, without `pip install -e .`)."""
    return os.pathsep.join([str(PREPARE_KIT.parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])


def run_prepare(variant: TaskVariant, tree: Path) -> None:
    script = variant.prepare_script
    if script is None:
        return
    command = [sys.executable, str(script), str(tree)] if script.suffix == ".py" else ["bash", str(script), str(tree)]
    proc = subprocess.run(
        command,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ATEBENCH_TASK_DIR": str(variant.dir), "PYTHONPATH": _with_harness_on_path()},
    )
    if proc.returncode != 0:
        raise WorkspaceError(
            f"task {variant.task.id!r} on {variant.framework!r}: {script.name} failed "
            f"(exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
        )


def create_workspace(variant: TaskVariant, framework: FrameworkSpec, dest: Path, cache: Path | None = None) -> Path:
    """A fresh copy of the prepared checkout at dest, as a git repo with one baseline commit."""
    return _working_tree(prepared_checkout(variant, framework, cache), dest)


def _working_tree(prepared: Path, dest: Path) -> Path:
    copy_clean(prepared, dest)
    git("init", "-q", "-b", "main", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "--no-verify", "--allow-empty", "-m", "baseline", cwd=dest)
    return dest


# ---- diffs ---------------------------------------------------------------------------------------


@dataclass
class TreeDiff:
    patch: str  # `git diff --binary`, applies with `git apply` on the before tree
    files: list[str]  # paths changed, added or deleted
    left_out: list[str] = field(default_factory=list)  # files over MAX_DIFF_FILE_BYTES or not regular files


# The scratch repo of a diff reads no git configuration but its own, and the trees' .gitignore and .gitattributes
# files have no say: an agent's `.gitignore` would hide its new files from agent.diff and from grading's checks of
# changed files, a `-diff` attribute would turn its changes into opaque binary patches, and a filter attribute
# would run whatever the host's own git configuration names for it.
DIFF_GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_ATTR_NOSYSTEM": "1"}
DIFF_ATTRIBUTES = "* !diff !merge !filter !text !eol !ident !working-tree-encoding !export-ignore\n"


def _diff_git(repo: Path, *args: str) -> bytes:
    proc = subprocess.run(
        ["git", *GIT_IDENTITY, "-c", f"core.excludesFile={os.devnull}", "-c", "core.autocrlf=false", *args],
        cwd=repo,
        capture_output=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **DIFF_GIT_ENV},
    )
    if proc.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def tree_diff(before: Path, after: Path) -> TreeDiff:
    """Diff two trees via a scratch git repo, so untracked files and deletions are included: every file, whatever
    the trees' .gitignore files say, byte for byte (a file that is not UTF-8, CRLF line ends). The patch is decoded
    leniently for the record (an undecodable byte becomes U+FFFD); the file names exactly (os.fsdecode)."""
    with tempfile.TemporaryDirectory(prefix="atebench-diff-") as scratch:
        repo = Path(scratch) / "repo"
        copy_clean(before, repo)
        _diff_git(repo, "init", "-q")
        (repo / ".git" / "info").mkdir(exist_ok=True)
        (repo / ".git" / "info" / "attributes").write_text(DIFF_ATTRIBUTES)
        _diff_git(repo, "add", "-A", "--force")
        _diff_git(repo, "commit", "-q", "--no-verify", "--allow-empty", "-m", "before")
        for child in repo.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        left_out = copy_clean(after, repo, max_file_bytes=MAX_DIFF_FILE_BYTES, max_total_bytes=MAX_DIFF_TOTAL_BYTES)
        _diff_git(repo, "add", "-A", "--force")
        options = ("--cached", "--no-renames", "--no-ext-diff", "--no-textconv")
        patch = _diff_git(repo, "diff", *options, "--binary", "HEAD")
        names = _diff_git(repo, "diff", *options, "--name-only", "-z", "HEAD")
    files = {os.fsdecode(n) for n in names.split(b"\0") if n}
    return TreeDiff(patch=patch.decode(errors="replace"), files=sorted({*files, *left_out}), left_out=left_out)


def gold_patch(variant: TaskVariant, framework: FrameworkSpec, cache: Path | None = None) -> str:
    """The reference solution: solution.patch, else the diff prepared -> original (hidden tests left out)."""
    if variant.solution_patch is not None:
        return variant.solution_patch.read_text()
    return solution_diff(variant, prepared_checkout(variant, framework, cache), original_source(framework, cache))


def solution_diff(variant: TaskVariant, prepared: Path, original: Path) -> str:
    """gold_patch from trees a trial already holds (its Workspace): solution.patch, else prepared -> original."""
    if variant.solution_patch is not None:
        return variant.solution_patch.read_text()
    tree = copy_without_hidden_tests(variant, original)
    try:
        return tree_diff(prepared, tree).patch
    finally:
        shutil.rmtree(tree.parent, ignore_errors=True)


def copy_without_hidden_tests(variant: TaskVariant, tree: Path) -> Path:
    """The gold solution must not smuggle the hidden tests into the workspace."""
    scratch = Path(tempfile.mkdtemp(prefix="atebench-orig-"))
    copy_clean(tree, scratch / "tree")
    for rel in variant.hidden_test_paths():
        (scratch / "tree" / rel).unlink(missing_ok=True)
    return scratch / "tree"
