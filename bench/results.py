"""Result files (schema version 1): one result.json per trial, one run.json per run.

Why atomic writes at start and end: a crash or Ctrl-C must never leave a half-written result, and a
trial that started but never ended must be visible (status "running" or "interrupted") so --resume
re-runs exactly those.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

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
        raise ValueError(f"run id {run_id!r} is not a plain folder name; use letters, digits, '.', '_' and '-' "
                         "(no '/', no '..', not starting with '.' or '-')")
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


def empty_metrics() -> dict:
    """Counts start at 0; anything not measured (no GPU, no price) stays null, never 0."""
    return {
        "agent_turns": 0, "session_duration_s": None, "wall_time_s": 0.0, "per_turn_context_p50": None,
        "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
        "cost_usd": None, "api_errors": 0, "api_retries": 0,
        "gpu_available": False, "gpus": [], "active_gpu_s": None, "gpu_hours_allocated": None,
        "throughput_tokens_per_s": None,
    }


def new_result(run_id: str, task: str, family: str, framework: str, agent: str, model: str | None,
               trial: int) -> dict:
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "task": task, "task_family": family,
        "framework": framework, "agent": agent, "model": model, "trial": trial,
        "status": "running", "error": None, "exit_status": None,
        "started_at": now_iso(), "finished_at": None,
        "metrics": empty_metrics(), "grade": None, "files": dict(FILES),
    }


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
    """The trial's result, None when it never started; CorruptResult when the file is not JSON."""
    path = folder / "result.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptResult(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise CorruptResult(f"{path}: not a schema_version {SCHEMA_VERSION} result")
    return data


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
    data = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "created_at": now_iso(), "args": args,
            "trials": trials}
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
        raise RunFileError(f"{path}: not a run file (needs an 'args' object and a 'trials' list); "
                           "restore it or start a new --run-id")
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
