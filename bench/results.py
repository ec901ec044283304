"""Result files (schema version 1): one result.json per trial (`TrialResult`), one run.json per run.

Why atomic writes at start and end: a crash or Ctrl-C must never leave a half-written result, and a
trial that started but never ended must be visible (status "running" or "interrupted") so --resume
re-runs exactly those. Why one dataclass: the trial writes it and run, report and compare read it, so
its fields are spelled once, here.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from bench.metrics import Metrics

SCHEMA_VERSION = 1
RESULTS_ROOT = Path(__file__).resolve().parents[1] / "results"  # the default --results-dir
PROFILES_FOLDER = "profiles"  # results/profiles/ holds `runner.py profile` output, so it is no run id
STATUSES = ("resolved", "unresolved", "error", "running", "interrupted")
FINISHED = ("resolved", "unresolved")
FILES = {"trajectory": "trajectory.jsonl", "diff": "agent.diff", "grader_log": "grader.log", "agent_log": "agent.log"}


class CorruptResult(Exception):
    """A result.json that is not valid JSON (a disk or kill accident); the message names the file."""


class RunFileError(Exception):
    """A run.json that cannot be used (not JSON, wrong shape, unsafe paths); the message names the file."""


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_run_id(run_id: str) -> str:
    """A run id is one folder name under the results folder: never a path, never `..`."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ValueError(
            f"run id {run_id!r} is not a plain folder name; use letters, digits, '.', '_' and '-' "
            "(no '/', no '..', not starting with '.' or '-')"
        )
    if run_id == PROFILES_FOLDER:
        raise ValueError(f"run id {run_id!r} is reserved for `runner.py profile` output; choose another --run-id")
    return run_id


def check_relative(rel: str | Path, what: str) -> Path:
    """A path inside a run folder: relative, and never leaving it through `..`."""
    path = Path(rel)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"{what} {str(rel)!r} must be a relative path inside the run folder (no '..', not absolute)")
    return path


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def trial_path(task: str, framework: str, agent: str, trial: int) -> Path:
    """A trial's folder relative to its run's folder (results/<run_id>/)."""
    return check_relative(Path(task.replace("/", "__")) / framework / agent / str(trial), "trial folder")


PHASES = ("setup", "agent", "grade", "throughput")  # a trial's phases, in order; `error.phase` names one


@dataclass
class TrialResult:
    """One trial's result.json. Written when the trial starts (status "running"), after each phase, and
    when it ends; `to_json` gives the file's object (metrics included, as Metrics.to_json)."""

    run_id: str
    task: str
    task_family: str
    framework: str
    agent: str
    model: str | None
    """The LLM the agent called (its spec's model); None for agents without one."""
    trial: int
    """The attempt's index within task x framework x agent."""
    status: str = "running"
    """One of STATUSES."""
    error: dict | None = None
    """{"phase": one of PHASES, "message": ...} for a failed or interrupted trial only; never a remark."""
    exit_status: str | None = None
    """Why the agent stopped (bench.types.EXIT_STATUSES); None until it has."""
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    """The agent phase's numbers (bench.metrics.trial_metrics) plus the throughput phase's; unmeasured is null."""
    grade: dict | None = None
    """bench.grading.Grade.to_json(); None when the trial never reached grading."""
    files: dict = field(default_factory=lambda: dict(FILES))
    notes: list[str] = field(default_factory=list)
    """What a reader should know that is not an error (a throughput not measured, files left out of the diff)."""
    phase_seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds per phase that ran (setup, agent, grade, throughput): the harness's own overhead."""
    schema_version: int = SCHEMA_VERSION

    def fail(self, phase: str, message: str) -> None:
        """The first failure wins: a later phase's error never overwrites the one that ended the trial."""
        if self.status != "error":
            self.status, self.error = "error", {"phase": phase, "message": message}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrialResult":
        """Reads every schema version 1 result, including those written before `notes`, `phase_seconds` and
        some metrics existed; a missing identity field or an unknown field is a ValueError naming it."""
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"not a schema_version {SCHEMA_VERSION} result")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)} in a schema_version {SCHEMA_VERSION} result")
        missing = [
            name for name in ("run_id", "task", "task_family", "framework", "agent", "trial") if name not in data
        ]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        values = dict(data)
        values.setdefault("model", None)
        values["notes"] = list(values.get("notes") or [])
        values["phase_seconds"] = dict(values.get("phase_seconds") or {})
        values["metrics"] = Metrics.from_json(values.get("metrics") or {})
        return cls(**values)


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_result(folder: Path) -> dict | None:
    """The trial's result (as `TrialResult.to_json`), None when it never started; CorruptResult when the
    file is not JSON or not a result."""
    path = folder / "result.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptResult(f"{path}: not valid JSON ({e})") from None
    try:
        return TrialResult.from_json(data).to_json()
    except (ValueError, TypeError) as e:
        raise CorruptResult(f"{path}: {e}") from None


def is_finished(folder: Path, warn=print) -> bool:
    """For --resume: resolved/unresolved trials are done; a corrupt trial folder is kept aside whole and re-run."""
    try:
        result = read_result(folder)
    except CorruptResult as e:
        aside = set_aside(folder, "corrupt")
        warn(f"warning: {e}; the trial folder is kept as {aside.name}, the trial will run again")
        return False
    return result is not None and result["status"] in FINISHED


def set_aside(folder: Path, label: str | None = None) -> Path:
    """Move a trial folder that is about to be re-run to `<trial>.<label>-<n>`, keeping every file.

    Its result.json becomes result.json.<label> so that reports, which read every result.json under a
    run, do not count an earlier attempt as a trial. `label` defaults to the recorded status.
    """
    if label is None:
        try:
            label = (read_result(folder) or {}).get("status") or "unfinished"
        except CorruptResult:
            label = "corrupt"
    n = 1
    while (aside := folder.with_name(f"{folder.name}.{label}-{n}")).exists():
        n += 1
    os.rename(folder, aside)
    if (aside / "result.json").exists():
        os.rename(aside / "result.json", aside / f"result.json.{label}")
    return aside


def write_run(results_root: Path, run_id: str, args: dict, trials: list[str]) -> Path:
    """run.json; an existing one keeps its creation time, and arguments it had before (a run extended
    with --extend) are kept in `previous_args`."""
    path = results_root / check_run_id(run_id) / "run.json"
    data = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "created_at": now_iso(), "args": args, "trials": trials}
    old = read_run(results_root, run_id)
    if old is not None:
        data["created_at"] = old.get("created_at", data["created_at"])
        previous = list(old.get("previous_args", []))
        if old.get("args") != args:
            previous.append(old.get("args"))
        if previous:
            data["previous_args"] = previous
    write_json_atomic(path, data)
    return path


def read_run(results_root: Path, run_id: str) -> dict | None:
    """The run's run.json, None when the run does not exist; RunFileError when it cannot be used."""
    path = results_root / check_run_id(run_id) / "run.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFileError(f"{path}: not valid JSON ({e}); restore it or start a new --run-id") from None
    if not isinstance(data, dict) or not isinstance(data.get("args"), dict) or not isinstance(data.get("trials"), list):
        raise RunFileError(
            f"{path}: not a run file (needs an 'args' object and a 'trials' list); restore it or start a new --run-id"
        )
    for rel in data["trials"]:
        try:
            check_relative(rel, "trial folder")
        except (ValueError, TypeError) as e:
            raise RunFileError(f"{path}: {e}") from None
    return data


def load_results(results_root: Path, run_id: str) -> list[dict]:
    """Every readable trial result of a run, in run.json order; unreadable ones are skipped."""
    run = read_run(results_root, run_id) or {"trials": []}
    found = []
    for rel in run["trials"]:
        try:
            result = read_result(results_root / run_id / rel)
        except CorruptResult:
            continue
        if result is not None:
            found.append(result)
    return found


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S")
