"""Result files (schema version 1): one result.json per trial, one run.json per run.

Why atomic writes at start and end: a crash or Ctrl-C must never leave a half-written result, and a
trial that started but never ended must be visible (status "running" or "interrupted") so --resume
re-runs exactly those.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 1
STATUSES = ("resolved", "unresolved", "error", "running", "interrupted")
FINISHED = ("resolved", "unresolved")
FILES = {"trajectory": "trajectory.jsonl", "diff": "agent.diff", "grader_log": "grader.log", "agent_log": "agent.log"}


class CorruptResult(Exception):
    """A result.json that is not valid JSON (a disk or kill accident); the message names the file."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def trial_path(task: str, framework: str, agent: str, trial: int) -> Path:
    """A trial's folder relative to its run's folder (results/<run_id>/)."""
    return Path(task.replace("/", "__")) / framework / agent / str(trial)


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
    """For --resume: resolved/unresolved trials are done; a corrupt file is kept aside and re-run."""
    try:
        result = read_result(folder)
    except CorruptResult as e:
        corrupt = folder / "result.json.corrupt"
        os.replace(folder / "result.json", corrupt)
        warn(f"warning: {e}; kept as {corrupt.name}, the trial will run again")
        return False
    return result is not None and result["status"] in FINISHED


def write_run(results_root: Path, run_id: str, args: dict, trials: list[str]) -> Path:
    path = results_root / run_id / "run.json"
    created = now_iso()
    if path.is_file():
        try:
            created = json.loads(path.read_text()).get("created_at", created)
        except json.JSONDecodeError:
            pass
    write_json_atomic(path, {"schema_version": SCHEMA_VERSION, "run_id": run_id, "created_at": created,
                             "args": args, "trials": trials})
    return path


def read_run(results_root: Path, run_id: str) -> dict | None:
    path = results_root / run_id / "run.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


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
