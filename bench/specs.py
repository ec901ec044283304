"""Framework and task specs: typed TOML files read once, validated on load.

Why pydantic with extra fields forbidden: a misspelt field must fail loudly, naming the file, the field
and the fix, instead of silently falling back to a default and producing a wrong benchmark.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REPO_ROOT = Path(__file__).resolve().parents[1]


def unsafe_path(path: str) -> str | None:
    """Why `path` could reach outside the folder it is relative to, or None when it cannot."""
    if not path or path.startswith(("/", "~")) or "\\" in path:
        return "is empty, absolute or not a plain relative path"
    if ".." in PurePosixPath(path).parts:
        return "contains '..'"
    return None


class SpecError(Exception):
    """A spec file is missing or wrong; the message names the file, the field and the fix."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- frameworks/<name>/framework.toml -------------------------------------------------------------


class Source(Strict):
    """Where the framework's code comes from."""

    kind: Literal["bundled", "git"]
    path: str | None = None
    """bundled: a folder of this repository, relative to the repository root (e.g. "reference_impl")."""
    url: str | None = None
    """git: the repository to clone."""
    commit: str | None = None
    """git: the full 40-hex commit to check out; pinned so every trial sees the same code."""
    override_env: str | None = None
    """Environment variable naming a local folder (bundled) or local clone/mirror (git) to use instead."""
    sdist: str | None = None
    """git: pip requirement of the same release's source distribution, used when the URL does not answer
    and no override is set (bench/sources.py); it must match `manifest` file by file or it is refused."""
    manifest: str | None = None
    """git with sdist: file in the framework folder, sha256 per path of the git tree at `commit`."""

    @model_validator(mode="after")
    def _kind_fields(self):
        if (self.sdist is None) != (self.manifest is None) or (self.sdist and self.kind != "git"):
            raise ValueError(
                "source.sdist and source.manifest go together, with kind = 'git': the sdist is only "
                "trusted after checking it against the manifest made from the git tree"
            )
        if self.kind == "bundled" and not self.path:
            raise ValueError("source.kind = 'bundled' needs source.path (a folder relative to the repo root)")
        if self.kind == "bundled" and unsafe_path(self.path):
            raise ValueError(f"source.path {self.path!r} {unsafe_path(self.path)}; name a folder inside the repository")
        if self.kind == "git":
            if not self.url:
                raise ValueError("source.kind = 'git' needs source.url")
            if not self.commit or len(self.commit) != 40 or any(c not in "0123456789abcdef" for c in self.commit):
                raise ValueError("source.kind = 'git' needs source.commit: a full 40-character lowercase hex SHA")
        return self


class SandboxSpec(Strict):
    """How a sandbox for this framework is built and entered."""

    dockerfile: str = "Dockerfile"
    """Path relative to the framework folder; its image is built locally (nothing is pulled)."""
    setup: list[str] = []
    """Commands run in each fresh sandbox (agent and grading) before anything else, e.g. an editable install."""
    env: dict[str, str] = {}
    """Environment for every command; "{workdir}" is replaced by the workspace path inside the sandbox."""
    gpus: int = 0
    """GPUs the framework needs to do anything useful; hosts with fewer skip it when --framework all."""
    python_packages: list[str] = []
    """pip requirements of the docker image. Containers have no network, so the host downloads them as
    wheels (cached) into the build context's wheels/ folder, which the Dockerfile installs from."""


class Commands(Strict):
    test: str = "python -m pytest -q"
    """The framework's own test command (documentation for agents and task authors)."""
    throughput: str | None = None
    """The framework's generic benchmark, run after a resolved trial of a task that measures throughput but
    whose variant has no throughput.toml; its one JSON line with a "tokens_per_s" key is recorded (two lines are
    no measurement)."""
    throughput_timeout_s: float = 600.0
    throughput_repeats: int = Field(default=3, ge=1)
    """How many times the generic benchmark runs, so the result states its spread."""


class ProfileSpec(Strict):
    """What `runner.py profile` needs to know about the framework's code."""

    entry: str | None = None
    """The file a training run starts from, relative to the source root (e.g. "reftrain/train.py"): import
    depths are counted from it. None: profile guesses (train.py, main.py, ... at the top or one level down)."""

    @model_validator(mode="after")
    def _entry_inside(self):
        if self.entry is not None and unsafe_path(self.entry):
            raise ValueError(
                f"profile.entry {self.entry!r} {unsafe_path(self.entry)}; name a file relative to the source root"
            )
        return self


class FrameworkSpec(Strict):
    name: str
    description: str = ""
    source: Source
    sandbox: SandboxSpec = SandboxSpec()
    commands: Commands = Commands()
    profile: ProfileSpec = ProfileSpec()
    dir: Path = Field(default=Path("."), exclude=True)
    """The framework folder (filled in by the loader, not written in the file)."""

    def bundled_path(self) -> Path:
        """The bundled source folder: the override when set, else source.path from the repository root."""
        return self.override_path() or self.dir.parents[1] / self.source.path

    def override_path(self) -> Path | None:
        """The local folder that replaces the source, from source.override_env or ATEBENCH_SRC_<NAME>."""
        var = self.source.override_env or f"ATEBENCH_SRC_{self.name.upper().replace('-', '_')}"
        value = os.environ.get(var)
        return Path(value).expanduser().resolve() if value else None


# ---- tasks/<id>/task.toml ------------------------------------------------------------------------


class Limits(Strict):
    """A trial's budget (task.toml [limits]); the agent gets it as is (AgentContext.limits), and hitting
    one ends the trial cleanly with that exit status (limit_turns, limit_tokens, limit_cost, limit_time)."""

    turns: int = Field(default=100, ge=1)
    """Assistant API calls."""
    tokens: int = Field(default=2_000_000, ge=1)
    """Input + output + cache tokens, summed over turns."""
    cost_usd: float = Field(default=10.0, gt=0)
    """Priced from prices.toml; not enforced for a model without a price."""
    wall_time_s: float = Field(default=3600.0, gt=0)
    """The agent's wall time."""
    command_timeout_s: float = Field(default=600.0, gt=0)
    """Each command's timeout (capped by the wall time left)."""


class Resources(Strict):
    cpus: float = 2.0
    memory_gb: float = 8.0
    gpus: int = 0
    pids: int = 4096
    gpu_ladder: list[int] = []
    """GPU counts the task's distributed checks scale over on GPU hosts (e.g. [1, 2, 4]); empty = CPU only."""
    framework_gpus: dict[str, Annotated[int, Field(ge=0)]] = {}
    """GPUs a trial holds at least on the named frameworks, where that framework's version of the task needs more
    than `gpus` (e.g. {megatron = 2}: its checks compare layouts of two ranks, and only run on CUDA). A host with
    fewer skips the task on that framework, one line each."""
    python: Literal["harness", "bare"] = "harness"
    """The Python the agent's and the grading sandbox put first on PATH. harness: the harness's interpreter,
    the framework's packages installed. bare: a venv with the standard library and pip only, the framework's
    wheels read-only at $ATEBENCH_WHEELS and the harness's venv hidden (bench/sandbox/bare.py); the task is
    to install them (local sandbox only)."""


class TaskGrading(Strict):
    kind: Literal["tests", "answer"] = "tests"
    """tests: hidden tests judge the agent's tree (each variant has grading.toml). answer: the agent's final
    answer is judged against the variant's answer_key.toml (read-only Q&A tasks; bench/answers.py)."""
    timeout_s: float = 600.0


class TaskSpec(Strict):
    id: str | None = None
    """Optional; when given it must equal the folder path under tasks/ (e.g. "add-new-model/mixtral")."""
    family: str | None = None
    """Optional; defaults to the first folder of the id, so `--task add-new-model` selects the family."""
    description: str = ""
    limits: Limits = Limits()
    resources: Resources = Resources()
    grading: TaskGrading = TaskGrading()
    measure_throughput: bool = True
    """Measure post-task throughput after a resolved trial, with the variant's throughput.toml, else the
    framework's generic [commands] throughput. False where no benchmark shows the task's change (the result
    then carries a note and no number)."""
    framework_throughput_fallback: bool = True
    """Whether the framework's generic benchmark may stand in for a variant without throughput.toml; false
    where it would not run what the agent changed (a new model, expert parallelism)."""


class GradingSpec(Strict):
    """tasks/<id>/frameworks/<fw>/grading.toml: which hidden tests decide the verdict."""

    command: str
    """Test command run in the graded tree; the harness appends --junitxml=<file>."""
    tests_target: str = "tests"
    """Where the hidden tests/ folder is copied in the graded tree (overwriting the agent's copies)."""
    fail_to_pass: list[str] = Field(min_length=1)
    """pytest ids that fail before the change and must pass after it."""
    pass_to_pass: list[str] = []
    """pytest ids that pass before and must still pass."""
    gpu_fail_to_pass: list[str] = []
    """GPU tests that must pass when the trial holds GPUs, with "{n}" for a GPU count: each id is graded
    for every n in the task's resources.gpu_ladder that the trial's GPUs cover (none on a CPU host)."""
    restore_from_original: list[str] = []
    """Files of the framework's own test suite (paths in its checkout) copied from the ORIGINAL, unprepared
    source over the graded tree: the framework's own tests grade the task, and tasks/ keeps no copy of them."""
    support: list[str] = []
    """Files of frameworks/<fw>/ (paths relative to that folder) placed beside the hidden tests, at
    <tests_target>/<file name>: helpers that several tasks of one framework share (e.g. CPU shims), kept once."""
    task_support: list[str] = []
    """Files of tasks/<task>/ (paths relative to that folder) placed beside the hidden tests, at
    <tests_target>/<file name>: checks that every framework's variant of one task shares, kept once (each
    variant's test module imports them and supplies its framework's reference as a fixture)."""

    @model_validator(mode="after")
    def _paths_stay_inside(self):
        named = [("tests_target", self.tests_target)] + [("support", p) for p in self.support]
        named += [("task_support", p) for p in self.task_support]
        named += [("restore_from_original", p) for p in self.restore_from_original]
        for field in ("fail_to_pass", "pass_to_pass", "gpu_fail_to_pass"):
            named += [(field, test.split("::")[0]) for test in getattr(self, field)]
        for field, path in named:
            problem = unsafe_path(path)
            if problem:
                raise ValueError(f"{field}: {path!r} {problem}; name a path relative to the checkout's root")
        return self


class Region(Strict):
    """A place in the framework's source named by symbol, so a key survives reformatting; resolved with `ast`
    to its lines in the checkout at grade time (bench/answers.py)."""

    path: str
    """The Python file, relative to the checkout's root (e.g. "reftrain/optim.py")."""
    symbol: str
    """A dotted name in that file: a function, class or method ("RMSNorm.forward"), or an assignment at
    module or class level ("Qwen3MoeConfig.rms_norm_eps")."""

    @model_validator(mode="after")
    def _path_inside(self):
        if unsafe_path(self.path) or not self.path.endswith(".py"):
            raise ValueError(f"path {self.path!r} must be a .py file relative to the checkout's root")
        if not all(part.isidentifier() for part in self.symbol.split(".")):
            raise ValueError(f"symbol {self.symbol!r} is not a dotted Python name like 'RMSNorm.forward'")
        return self


class Fact(Strict):
    """One thing a correct answer must establish, with the source regions that support it."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    """Names the fact in the grade and the grader's log."""
    claim: str = Field(min_length=1)
    """The fact in one sentence; the gold answer states it."""
    regions: list[Region] = Field(min_length=1)
    """A citation inside any one of these counts."""
    values: list[str | int | float] = []
    """Values the citing statement must also state (a number matches in any notation: 1e-6 = 1e-06)."""
    absent: bool = False
    """The thing does not exist: only a statement saying "absent" that cites where it would have to be counts."""
    required: bool = True
    """False: reported in the grade, but the verdict does not depend on it."""


class AnswerKey(Strict):
    """tasks/<id>/frameworks/<fw>/answer_key.toml: what a correct answer to a Q&A task establishes."""

    facts: list[Fact] = Field(min_length=1)

    @property
    def max_citations(self) -> int:
        """The most distinct places an answer may cite: 4 per fact plus 8. Room for an honest answer that
        cites a definition and its uses, none for a spray of candidates (one citation per function of the
        right files, each followed by every name in it, resolved 3 of the 12 reference questions before
        this bound). The instruction states it (`{max_citations}`); bench/answers.py enforces it."""
        return 4 * len(self.facts) + 8

    @model_validator(mode="after")
    def _unique_ids(self):
        ids = [f.id for f in self.facts]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"fact ids {', '.join(repeated)} appear more than once; give each fact its own id")
        return self


class ThroughputSpec(Strict):
    """tasks/<id>/frameworks/<fw>/throughput.toml: how post-task throughput measures what the agent changed.

    Why per variant: the command names the framework's benchmark and the model or layout the task is about
    (the model the agent added, EP on), which only the task's author for that framework knows.
    """

    command: str
    """Prints a JSON line with "tokens_per_s" (tokens per second); "tokens_per_s_samples" (a list), when
    present, gives the samples of one run. Runs in the agent's final tree, in the trial's sandbox."""
    gpu_command: str | None = None
    """Run instead of `command` when the trial holds at least gpu_command_gpus GPUs."""
    gpu_command_gpus: int = Field(default=1, ge=1)
    repeats: int = Field(default=3, ge=1)
    """How many times the command runs; every run's samples are pooled for the median and the spread."""
    timeout_s: float = Field(default=900.0, gt=0)
    """Per run of the command."""
    restore_from_original: list[str] = []
    """Files (paths in the checkout) copied from the ORIGINAL framework source over the agent's tree before
    measuring, e.g. the task's model config, so the agent's edits cannot change what is measured."""

    @model_validator(mode="after")
    def _paths_stay_inside(self):
        for path in self.restore_from_original:
            if unsafe_path(path):
                raise ValueError(
                    f"restore_from_original: {path!r} {unsafe_path(path)}; name a path relative to the checkout's root"
                )
        return self


class Task(BaseModel):
    """A task as loaded: its spec plus where its files are."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    id: str
    family: str
    spec: TaskSpec
    dir: Path

    @property
    def instruction_template(self) -> str:
        return (self.dir / "instruction.md").read_text()

    def instruction(self, framework: str) -> str:
        return self.instruction_template.replace("{framework}", framework)

    def frameworks(self) -> list[str]:
        folder = self.dir / "frameworks"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def variant(self, framework: str) -> "TaskVariant":
        return load_variant(self, framework)


class TaskVariant(BaseModel):
    """One task on one framework: preparation, hidden tests, grading, gold and wrong solutions."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    task: Task
    framework: str
    dir: Path
    grading: GradingSpec | None = None
    """The hidden tests' grading.toml; None for a task graded by answer."""
    answer_key: AnswerKey | None = None
    """The answer_key.toml of a task graded by answer (task.toml [grading] kind = "answer")."""
    tests_fingerprint: str = ""
    """Content hash of the hidden tests when the spec was loaded; grading refuses tests changed since."""
    throughput: ThroughputSpec | None = None
    """From the variant's optional throughput.toml."""
    framework_dir: Path | None = None
    """frameworks/<fw>/ of the specs root: where grading.toml `support` files live."""

    @property
    def tests_dir(self) -> Path:
        return self.dir / "tests"

    @property
    def prepare_script(self) -> Path | None:
        for name in ("prepare.py", "prepare.sh"):
            if (self.dir / name).is_file():
                return self.dir / name
        return None

    @property
    def solution_patch(self) -> Path | None:
        path = self.dir / "solution.patch"
        return path if path.is_file() else None

    @property
    def wrong_patch(self) -> Path | None:
        patches = sorted((self.dir / "wrong").glob("*.patch")) if (self.dir / "wrong").is_dir() else []
        return patches[0] if patches else None

    @property
    def wrong_answer(self) -> Path | None:
        """wrong/answer.md: a plausible wrong answer to a Q&A task (its `{{path::symbol}}` are resolved)."""
        path = self.dir / "wrong" / "answer.md"
        return path if path.is_file() else None

    @property
    def answer_key_path(self) -> Path:
        return self.dir / "answer_key.toml"

    def instruction(self) -> str:
        """The task's instruction for this framework; a Q&A task's also states its citation bound."""
        text = self.task.instruction(self.framework)
        return text.replace("{max_citations}", str(self.answer_key.max_citations)) if self.answer_key else text

    def graded_test_paths(self) -> list[str]:
        """Every test path the grader puts into the graded tree: hidden tests and restored originals."""
        restored = self.grading.restore_from_original if self.grading else []
        return sorted({*self.hidden_test_paths(), *restored})

    def hidden_test_paths(self) -> list[str]:
        """Paths the hidden tests (and their support files) occupy in the graded tree, relative to its root."""
        if self.grading is None:
            return []
        found = (
            sorted(
                f"{self.grading.tests_target.rstrip('/')}/{p.relative_to(self.tests_dir).as_posix()}"
                for p in self.tests_dir.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            )
            if self.tests_dir.is_dir()
            else []
        )
        return sorted({*found, *self.support_files()})

    def support_files(self) -> dict[str, Path]:
        """grading.toml `support` and `task_support`: {path in the graded tree: file under frameworks/<fw>/ or
        tasks/<task>/}."""
        if self.grading is None:
            return {}
        target = self.grading.tests_target.rstrip("/")
        files = {f"{target}/{PurePosixPath(rel).name}": self.framework_dir / rel for rel in self.grading.support}
        files.update({f"{target}/{PurePosixPath(rel).name}": self.task.dir / rel for rel in self.grading.task_support})
        return files


# ---- loading -------------------------------------------------------------------------------------


def _describe(error: ValidationError, path: Path, root: Path) -> str:
    """One line per problem: file, field, what is wrong, how to fix it."""
    shown = _rel(path, root)
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(
                f"{shown}: unknown field '{field}'; remove it or fix its spelling (see docs/harness.md for the fields)"
            )
        elif item["type"] == "missing":
            lines.append(f"{shown}: missing required field '{field}'; add it")
        else:
            lines.append(f"{shown}: field '{field}': {item['msg']}; fix the value")
    return "\n".join(lines)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _read_toml(path: Path, root: Path) -> dict:
    if not path.is_file():
        raise SpecError(f"{_rel(path, root)}: file not found; create it (see docs/harness.md)")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{_rel(path, root)}: not valid TOML ({e}); fix the syntax") from None


def _validate(model, data: dict, path: Path, root: Path):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SpecError(_describe(e, path, root)) from None


def list_frameworks(root: Path = REPO_ROOT) -> list[str]:
    folder = root / "frameworks"
    return sorted(p.parent.name for p in folder.glob("*/framework.toml")) if folder.is_dir() else []


def load_framework(name: str, root: Path = REPO_ROOT) -> FrameworkSpec:
    if name not in list_frameworks(root):
        raise SpecError(f"unknown framework {name!r}; choose one of: {', '.join(list_frameworks(root)) or '(none)'}")
    path = root / "frameworks" / name / "framework.toml"
    spec = _validate(FrameworkSpec, _read_toml(path, root), path, root)
    if spec.name != name:
        raise SpecError(
            f"{_rel(path, root)}: field 'name' is {spec.name!r} but the folder is {name!r}; make them equal"
        )
    return spec.model_copy(update={"dir": path.parent})


def list_tasks(root: Path = REPO_ROOT) -> list[str]:
    """Every folder under tasks/ holding a task.toml, as its id (path with '/')."""
    folder = root / "tasks"
    if not folder.is_dir():
        return []
    return sorted(
        p.parent.relative_to(folder).as_posix()
        for p in folder.rglob("task.toml")
        if "frameworks" not in p.relative_to(folder).parts
    )


def load_task(task_id: str, root: Path = REPO_ROOT) -> Task:
    if task_id not in list_tasks(root):
        raise SpecError(f"unknown task {task_id!r}; choose one of: {', '.join(list_tasks(root)) or '(none)'}")
    folder = root / "tasks" / task_id
    path = folder / "task.toml"
    spec = _validate(TaskSpec, _read_toml(path, root), path, root)
    if spec.id is not None and spec.id != task_id:
        raise SpecError(
            f"{_rel(path, root)}: field 'id' is {spec.id!r} but the folder says {task_id!r}; "
            "make them equal or remove 'id'"
        )
    if not (folder / "instruction.md").is_file():
        raise SpecError(f"{_rel(folder / 'instruction.md', root)}: file not found; write the task's instruction there")
    family = spec.family or task_id.split("/")[0]
    task = Task(id=task_id, family=family, spec=spec, dir=folder)
    strangers = sorted(set(spec.resources.framework_gpus) - set(task.frameworks()))
    if strangers:
        raise SpecError(
            f"{_rel(path, root)}: resources.framework_gpus names {', '.join(map(repr, strangers))}, which the task has "
            f"no version for (it has: {', '.join(task.frameworks()) or '(none)'}); fix the name or remove the entry"
        )
    return task


def load_variant(task: Task, framework: str) -> TaskVariant:
    folder = task.dir / "frameworks" / framework
    root = task.dir.parents[len(task.id.split("/"))]
    if not folder.is_dir():
        raise SpecError(
            f"task {task.id!r} has no version for framework {framework!r} "
            f"(no folder {_rel(folder, root)}); it supports: {', '.join(task.frameworks()) or '(none)'}"
        )
    if task.spec.grading.kind == "answer":
        return _load_answer_variant(task, framework, folder, root)
    if (folder / "answer_key.toml").is_file():
        raise SpecError(
            f"{_rel(folder / 'answer_key.toml', root)}: an answer key, but {_rel(task.dir / 'task.toml', root)} "
            'does not say [grading] kind = "answer"; add that or remove the key'
        )
    path = folder / "grading.toml"
    grading = _validate(GradingSpec, _read_toml(path, root), path, root)
    problems = grading_problems(grading)
    if problems:
        raise SpecError("\n".join(f"{_rel(path, root)}: {problem}" for problem in problems))
    if not (folder / "tests").is_dir() and not grading.restore_from_original:
        raise SpecError(
            f"{_rel(folder / 'tests', root)}: folder not found; put the hidden grader tests there "
            "(or name the framework's own test files in grading.toml restore_from_original)"
        )
    throughput_path = folder / "throughput.toml"
    throughput = (
        _validate(ThroughputSpec, _read_toml(throughput_path, root), throughput_path, root)
        if throughput_path.is_file()
        else None
    )
    if throughput is not None and not task.spec.measure_throughput:
        raise SpecError(
            f"{_rel(throughput_path, root)}: the task's task.toml says measure_throughput = false; "
            "remove throughput.toml or set measure_throughput = true"
        )
    framework_dir = root / "frameworks" / framework
    for rel in grading.support:
        if not (framework_dir / rel).is_file():
            raise SpecError(
                f"{_rel(path, root)}: support names {rel!r}, which is not a file under "
                f"{_rel(framework_dir, root)}; fix the path"
            )
    for rel in grading.task_support:
        if not (task.dir / rel).is_file():
            raise SpecError(
                f"{_rel(path, root)}: task_support names {rel!r}, which is not a file under "
                f"{_rel(task.dir, root)}; fix the path"
            )
    return TaskVariant(
        task=task,
        framework=framework,
        dir=folder,
        grading=grading,
        throughput=throughput,
        tests_fingerprint=fingerprint(folder / "tests"),
        framework_dir=framework_dir,
    )


def _load_answer_variant(task: Task, framework: str, folder: Path, root: Path) -> TaskVariant:
    """A Q&A variant: its answer key instead of grading.toml and hidden tests (which it must not have)."""
    for name in ("grading.toml", "tests", "solution.patch", "prepare.py", "prepare.sh"):
        if (folder / name).exists():
            raise SpecError(
                f"{_rel(folder / name, root)}: a task graded by answer (task.toml [grading] kind = "
                f'"answer") has no {name}; remove it (the gold answer is rendered from answer_key.toml)'
            )
    path = folder / "answer_key.toml"
    key = _validate(AnswerKey, _read_toml(path, root), path, root)
    return TaskVariant(
        task=task, framework=framework, dir=folder, answer_key=key, framework_dir=root / "frameworks" / framework
    )


def grading_problems(grading: GradingSpec) -> list[str]:
    """Mistakes in a grading.toml that its types let through, one line each with the field and the fix:
    a blank command, a repeated test id, an id in both fail_to_pass and pass_to_pass."""
    problems = []
    if not grading.command.strip():
        problems.append("field 'command' is empty; write the test command, e.g. \"python -m pytest -q tests\"")
    for field in ("fail_to_pass", "pass_to_pass", "gpu_fail_to_pass"):
        ids = getattr(grading, field)  # an empty id is refused earlier, as a path outside the checkout
        repeated = sorted({test for test in ids if ids.count(test) > 1})
        if repeated:
            problems.append(f"field '{field}' lists {', '.join(map(repr, repeated))} more than once; keep one of each")
    both = sorted(set(grading.fail_to_pass) & set(grading.pass_to_pass))
    if both:
        problems.append(
            f"{', '.join(map(repr, both))} in both 'fail_to_pass' and 'pass_to_pass'; a test fails or "
            "passes before the change, so keep it in the list that says which"
        )
    return problems


def fingerprint(folder: Path, skip: tuple[str, ...] = ()) -> str:
    """sha256 over every file's path and bytes below `folder` ('' when it does not exist). Symlinks count by
    their target's name, never followed; caches and top-level entries named in `skip` are left out."""
    if not folder.is_dir():
        return ""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_symlink() or p.is_file()):
        rel = path.relative_to(folder)
        if rel.parts[0] in skip or "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        content = b"link:" + os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        digest.update(rel.as_posix().encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


def select_tasks(pattern: str, root: Path = REPO_ROOT) -> list[str]:
    """`smoke` selects that task; a family name (`add-new-model`) selects every task under it; `all` all."""
    tasks = list_tasks(root)
    if pattern == "all":
        return tasks
    chosen = [t for t in tasks if t == pattern or t.startswith(pattern.rstrip("/") + "/")]
    if not chosen:
        families = sorted({t.split("/")[0] for t in tasks})
        raise SpecError(
            f"unknown task {pattern!r}; choose a task ({', '.join(tasks) or 'none'}), "
            f"a family ({', '.join(families) or 'none'}) or 'all'"
        )
    return chosen
