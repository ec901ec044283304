"""The Slurm executor: each trial of a run's plan is a Slurm job, submitted through submitit.

Why Slurm and not a scheduler of our own: a leaderboard's matrix is hundreds of trials of up to 8 GPUs
and 90 minutes each; the clusters our users have already schedule, account and preempt. The job runs
the very `Trial.run` a local trial runs and writes its files into the same run folder (a filesystem the
nodes share), so results, --resume, report and compare do not know which executor ran a trial.

What the host does: one probe job first (can a job write into the run folder?), then one job array per
resource shape, then it watches result files and Slurm's job states for the live progress. A job Slurm
ends before its trial did (time limit, scancel, node failure, preemption) gets a labelled result:
status "error", `error.kind` "infra_error", Slurm's state and reason; --resume runs it again.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import submitit
from rich.console import Console

from bench import results
from bench.gpu import GpuAllocator, detect_gpus, gpus_per_trial
from bench.trial import SIGNAL_RACE_S, Trial, TrialConfig

SETUP_ALLOWANCE_S = 600  # workspace preparation and result writing, on top of the task's own limits
POLL_S = 1.0  # squeue and scontrol calls are cheap; progress and labels follow within a second
# squeue's states of a job that has not ended (COMPLETING: ended, its processes are still being killed)
LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "RESIZING"}
LIVE |= {"REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "POWER_UP_NODE"}
# How long a job may be absent from squeue, scontrol and sacct, with squeue answering, before it counts
# as gone: an array task cancelled while queued leaves no record at all without accounting.
LOST_AFTER_S = 30.0
JOBS_FILE = "jobs.json"  # <run>/slurm/jobs.json: trial folder -> the Slurm job that runs it


class SlurmError(Exception):
    """Slurm cannot run this run; the message says why and what to fix."""


@dataclass(frozen=True)
class SlurmOptions:
    """Site specifics from the command line; every other sbatch setting comes from the task."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    args: tuple[str, ...] = ()  # --slurm-arg KEY=VALUE, as given


def parse_slurm_args(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`--slurm-arg KEY=VALUE` pairs as a dict; a malformed one is a ValueError naming it."""
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--slurm-arg {item!r} is not KEY=VALUE (e.g. --slurm-arg constraint=h100)")
        parsed[key.strip().lstrip("-")] = value.strip()
    return parsed


def sbatch_parameters(options: SlurmOptions, job_name: str) -> dict:
    """submitit's parameters for the site options: a submitit parameter by its name (time, gres,
    constraint, array_parallelism, ...), anything else as a raw sbatch option."""
    site = {"partition": options.partition, "account": options.account, "qos": options.qos}
    params = {"job_name": job_name, **{k: v for k, v in site.items() if v}}
    known = set(submitit.SlurmExecutor._valid_parameters())
    raw = {}
    for key, value in parse_slurm_args(options.args).items():
        name = key.replace("-", "_")
        if name in known:
            params[name] = int(value) if name in ("array_parallelism", "signal_delay_s", "nodes") else value
        else:
            raw[key] = value
    if raw:
        params["additional_parameters"] = raw
    return params


def trial_resources(config: TrialConfig) -> dict:
    """cpus, memory, GPUs and time limit of a trial's job, from its task (and --gpus).

    The time limit is the agent's wall limit, plus grading, plus the throughput runs when they are
    measured, plus SETUP_ALLOWANCE_S; --slurm-arg time=... replaces it.
    """
    spec = config.variant.task.spec
    seconds = spec.limits.wall_time_s + spec.grading.timeout_s + SETUP_ALLOWANCE_S
    if config.throughput_wanted:
        seconds += config.framework.commands.throughput_timeout_s * config.framework.commands.throughput_repeats
    resources = {
        "cpus_per_task": max(1, math.ceil(spec.resources.cpus)),
        "mem": f"{math.ceil(spec.resources.memory_gb * 1024)}M",
        "time": math.ceil(seconds / 60),
    }
    gpus = gpus_per_trial(config.framework, spec, config.gpus)
    if gpus:
        resources["gpus_per_node"] = gpus
    return resources


# ---- what runs on the node ----


def run_trial_job(config: TrialConfig) -> str:
    """A trial's job: the trial a local run would run, holding the GPUs Slurm gave the job.

    GPUs: Slurm sets CUDA_VISIBLE_DEVICES to the job's GPUs; detect_gpus reads it, so the trial's
    sandbox, NVML sampling and gpu_hours_allocated use exactly those, as on a local machine. A job Slurm
    gave no GPUs offers none, even on a GPU node (not every GPU NVML sees there).
    SIGTERM (scancel, a time limit, preemption) closes the trial's sandboxes and removes its temporary
    folder (workspace, grading copy, sandbox control files: the job points TMPDIR at one folder of its
    own) before Slurm's SIGKILL, so nothing is left on the node; the host labels the trial.
    """
    own_tmp = tempfile.mkdtemp(prefix="atebench-job-")
    os.environ["TMPDIR"] = tempfile.tempdir = own_tmp
    granted = detect_gpus() if "CUDA_VISIBLE_DEVICES" in os.environ else []
    trial = Trial(replace(config, gpu_allocator=GpuAllocator(granted)))

    def stop(signum, frame):
        # Slurm signals every process of the job, srun forwards its own: the first signal does the work
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        trial.interrupt(signal.Signals(signum).name)
        shutil.rmtree(own_tmp, ignore_errors=True)
        sys.stdout.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    # submitit's own handler of the time-limit warning (SIGUSR2) would requeue the job, or raise inside
    # the trial; a trial is not checkpointable, so it runs on until the limit and the host labels it.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    # the trial runs in a thread: the handler runs in the main thread and takes the trial's lock, which
    # it could never get if it had interrupted the trial's own frame while that held it
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(trial.run()), name="trial")
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
        if outcome and outcome[0] and outcome[0].status == "error":
            # scancel signals every process of the job at once: a command it killed can end the trial in error
            # just before this process's own SIGTERM is handled; let that signal land (Trial.interrupt)
            time.sleep(SIGNAL_RACE_S / 2)
    finally:
        shutil.rmtree(own_tmp, ignore_errors=True)
    return outcome[0].status if outcome and outcome[0] else "interrupted"


def probe_job(path: str) -> str:
    """The probe's body: write one file into the run folder, as every trial job will."""
    text = f"written by a Slurm job on {socket.gethostname()}\n"
    Path(path).write_text(text)
    return text


# ---- Slurm's view of the jobs ----


def job_states(job_ids: list[str], name: str) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} for the jobs Slurm still knows: squeue for live ones (by the run's job
    name), then scontrol (ended jobs, for MinJobAge), then sacct where accounting is on. Array tasks are
    `<array>_<index>`. None when squeue does not answer (a busy controller): nothing is known then."""
    wanted = set(job_ids)
    found: dict[str, tuple[str, str]] = {}
    if not wanted:
        return found
    mains = sorted({j.split("_")[0] for j in wanted})
    out = _slurm(["squeue", "--noheader", "--array", "--name", name, "--format", "%i|%T|%r"])
    if out is None:
        return None
    for line in out.splitlines():
        job, _, rest = line.partition("|")
        state, _, reason = rest.partition("|")
        if job in wanted:
            found[job] = (state, reason)
    for main in mains:
        if all(j in found for j in wanted if j.split("_")[0] == main):
            continue
        for line in (_slurm(["scontrol", "--oneliner", "show", "job", main]) or "").splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            job = fields.get("JobId", "")
            if fields.get("ArrayJobId") and fields.get("ArrayTaskId", "").isdigit():
                job = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
            if job in wanted and job not in found:
                found[job] = (fields.get("JobState", "UNKNOWN"), fields.get("Reason", ""))
    missing = sorted(wanted - set(found))
    if missing and shutil.which("sacct"):
        out = _slurm(
            ["sacct", "--noheader", "--parsable2", "--allocations", "--format", "JobID,State", "-j", ",".join(missing)]
        )
        for line in (out or "").splitlines():
            job, _, state = line.partition("|")
            if job in wanted and job not in found:
                found[job] = (state.split()[0] if state else "UNKNOWN", "")
    return found


def _slurm(command: list[str]) -> str | None:
    """A Slurm client's output; None when it fails (an unknown job id, accounting off, no answer)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    return done.stdout if done.returncode == 0 else None


def slurm_unavailable_reason() -> str | None:
    """Why no Slurm controller answers from here, or None."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "the Slurm clients (sbatch, squeue) are not installed on this machine"
    try:
        done = subprocess.run(["sinfo", "--noheader", "-o", "%P"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo got no answer from a Slurm controller within 20 s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no message"]
        return f"sinfo failed: {lines[-1][:300]}"
    return None


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)


# ---- the host ----


class SlurmRun:
    """The host side of one invocation: probe, submit, watch, label; `cancel_all` for Ctrl-C."""

    def __init__(self, run_dir: Path, run_id: str, options: SlurmOptions, console: Console):
        self.run_dir = run_dir.resolve()
        self.folder = self.run_dir / "slurm"  # submitit's pickles and each job's stdout/stderr
        self.run_id = run_id
        self.options = options
        self.console = console
        self.job_name = f"atebench-{run_id}"  # squeue --name lists the run's jobs
        self.job_ids: list[str] = []  # every job this invocation submitted
        self.lock = threading.Lock()

    def executor(self, resources: dict) -> submitit.SlurmExecutor:
        executor = submitit.SlurmExecutor(folder=self.folder / "%j", max_num_timeout=0)
        # submitit always asks Slurm for a SIGUSR2 this long before the time limit (its checkpoint cue); a
        # trial has nothing to checkpoint and ignores it, and a short delay never lands on a job still
        # starting (with --slurm-arg time=1 a 60 s delay would kill the job at its start)
        params = {"signal_delay_s": 5, **resources, **sbatch_parameters(self.options, self.job_name)}
        try:
            executor.update_parameters(**params)
        except ValueError as e:
            raise SlurmError(f"the Slurm options are not valid: {e}") from None
        return executor

    @contextlib.contextmanager
    def _submitting(self):
        """Ctrl-C waits until sbatch has answered and the new job ids are known, so that it cancels them
        too; submitit echoes sbatch's stderr, which the SlurmError says again on one line."""
        signals = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)

    def _submitted(self, jobs) -> None:
        with self.lock:
            self.job_ids.extend(str(j.job_id) for j in jobs)

    def cancel_all(self) -> int:
        with self.lock:
            ids = list(self.job_ids)
        cancel(ids)
        return len(ids)

    def probe(self) -> None:
        """One tiny job writes into the run folder; SlurmError, with what to fix, when it cannot."""
        target = self.folder / f"probe-{os.getpid()}.txt"
        executor = self.executor({"cpus_per_task": 1, "mem": "256M", "time": 5})
        try:
            with self._submitting():
                job = executor.submit(probe_job, str(target))
                self._submitted([job])
        except (submitit.core.utils.FailedJobError, subprocess.SubprocessError, OSError) as e:
            raise SlurmError(f"sbatch refused the probe job: {_sbatch_error(e)}") from None
        self.console.print(
            f"slurm: probe job {job.job_id} checks that jobs can write into {self.run_dir}", highlight=False
        )
        state, reason = self._wait(str(job.job_id))
        with self.lock:  # ended: Ctrl-C from now on cancels the trials' jobs only
            self.job_ids.remove(str(job.job_id))
        written = target.is_file() and target.read_text().startswith("written by a Slurm job")
        if not written:
            log = _tail(Path(str(job.paths.stderr)))
            raise SlurmError(
                f"the probe job {job.job_id} ended {state}{_reason(reason)} without writing {target}: the run "
                "folder must be on a filesystem the compute nodes share and can write (use --results-dir on "
                "it), and the nodes need this Python environment at the same path"
                + (f"; its stderr ends: {log}" if log else "; it left no log there either")
            )
        target.unlink()

    def _wait(self, job_id: str) -> tuple[str, str]:
        lost, said = _Lost(), None
        while True:
            states = job_states([job_id], self.job_name)
            state, reason = (states or {}).get(job_id, ("", ""))
            if state and state not in LIVE:
                return state, reason
            if lost.gone(job_id, states):
                return "UNKNOWN", "Slurm no longer lists the job"
            if state == "PENDING" and said != reason:
                self.console.print(f"slurm: job {job_id} pending{_reason(reason)}", highlight=False)
                said = reason
            time.sleep(POLL_S)

    def submit(self, trials: list[Trial]) -> dict[Trial, str]:
        """One job array per resource shape; {trial: its job id}. The trial folders are emptied (an
        earlier attempt set aside) first, so a job that never starts leaves no stale result behind."""
        groups: dict[tuple, list[Trial]] = {}
        for trial in trials:
            groups.setdefault(tuple(sorted(trial_resources(trial.config).items())), []).append(trial)
        submitted: dict[Trial, str] = {}
        for shape, group in groups.items():
            executor = self.executor(dict(shape))
            for trial in group:
                if trial.folder.is_dir() and any(trial.folder.iterdir()):
                    results.set_aside(trial.folder)
                trial.folder.mkdir(parents=True, exist_ok=True)
            configs = [
                replace(t.config, gpu_allocator=None, results_root=t.config.results_root.resolve()) for t in group
            ]
            try:
                with self._submitting():
                    with executor.batch():
                        jobs = [executor.submit(run_trial_job, c) for c in configs]
                    self._submitted(jobs)
            except (submitit.core.utils.FailedJobError, subprocess.SubprocessError, OSError) as e:
                raise SlurmError(f"sbatch refused the trials' jobs ({dict(shape)}): {_sbatch_error(e)}") from None
            submitted.update({t: str(j.job_id) for t, j in zip(group, jobs)})
        self._record(submitted)
        return submitted

    def _record(self, submitted: dict[Trial, str]) -> None:
        path = self.folder / JOBS_FILE
        old = json.loads(path.read_text()) if path.is_file() else {}
        old.update({str(t.folder.relative_to(self.run_dir)): j for t, j in submitted.items()})
        results.write_json_atomic(path, old)

    def cancel_leftovers(self, trials: list[Trial]) -> None:
        """--resume after the host died: a job an earlier invocation left running would race the
        re-run of its trial; cancel it first (its trial is not finished, so it runs again)."""
        path = self.folder / JOBS_FILE
        if not path.is_file():
            return
        recorded = json.loads(path.read_text())
        ids = [recorded[k] for k in (str(t.folder.relative_to(self.run_dir)) for t in trials) if k in recorded]
        live = [j for j, (state, _) in (job_states(ids, self.job_name) or {}).items() if state in LIVE]
        if live:
            self.console.print(f"slurm: cancelling {len(live)} job(s) left by an earlier invocation", highlight=False)
            cancel(live)
            for job in live:
                self._wait(job)

    def watch(self, submitted: dict[Trial, str], on_event) -> None:
        """Until every job has ended: live progress from result files and job states, and a labelled
        result for each trial whose job ended before the trial did."""
        pending = dict(submitted)
        seen: dict[Trial, str] = {}
        lost = _Lost()
        while pending:
            states = job_states(list(pending.values()), self.job_name)
            for trial, job in list(pending.items()):
                state, reason = (states or {}).get(job, ("", ""))
                phase = _current_phase(trial.folder)
                if phase and seen.get(trial) != phase:
                    on_event(trial, {"kind": "phase", "phase": phase})
                    seen[trial] = phase
                elif state == "PENDING" and trial not in seen:
                    on_event(trial, {"kind": "log", "message": f"Slurm job {job} pending{_reason(reason)}"})
                    seen[trial] = "pending"
                gone = lost.gone(job, states)
                if state in LIVE or (not state and not gone):
                    continue
                del pending[trial]
                if not state:
                    state, reason = (
                        "UNKNOWN",
                        "Slurm no longer lists the job"
                        + ("; its trial never started: cancelled or removed while queued" if not phase else ""),
                    )
                result = self.label(trial, job, state, reason)
                error = result["error"]
                on_event(
                    trial,
                    {
                        "kind": "finished",
                        "status": result["status"],
                        "error": f"{error['phase']}: {error['message']}" if error else None,
                    },
                )
            if pending:
                time.sleep(POLL_S)

    def label(self, trial: Trial, job: str, state: str, reason: str) -> dict:
        """The trial's result once its job ended: as the trial wrote it when it ended (resolved,
        unresolved, error); otherwise an infra_error carrying Slurm's state and reason."""
        try:
            found = results.read_result(trial.folder)
        except results.CorruptResult:
            found = None
        if found and found["status"] in (*results.FINISHED, "error"):
            return found
        result = results.TrialResult.from_json(found) if found else trial.config.new_result()
        phase = (found or {}).get("error", {}) or {}
        log = Path(str(submitit.SlurmJob(folder=self.folder / "%j", job_id=job).paths.stderr))
        result.status = "error"
        result.error = {
            "phase": phase.get("phase") or _current_phase(trial.folder) or "setup",
            "message": f"infra_error: Slurm job {job} ended {state}{_reason(reason)} before the trial did; "
            + (
                f"its log: {log.relative_to(self.run_dir) if log.is_relative_to(self.run_dir) else log}; "
                if log.exists()
                else ""
            )
            + "run again with --resume",
            "kind": "infra_error",
            "slurm": {"job_id": job, "state": state, "reason": reason},
        }
        result.finished_at = results.now_iso()
        results.write_json_atomic(trial.folder / "result.json", result.to_json())
        return result.to_json()


class _Lost:
    """When a job Slurm stopped listing counts as gone: LOST_AFTER_S after squeue first answered
    without it. Polls where squeue did not answer prove nothing and do not count."""

    def __init__(self):
        self.since: dict[str, float] = {}

    def gone(self, job: str, states: dict | None) -> bool:
        if states is None:
            return False
        if job in states:
            self.since.pop(job, None)
            return False
        return time.monotonic() - self.since.setdefault(job, time.monotonic()) >= LOST_AFTER_S


def _current_phase(folder: Path) -> str | None:
    """The phase a running job's trial is in, read from the files it has written; None before it started."""
    if not (folder / "result.json").is_file():
        return None
    for phase, marker in (("grade", results.FILES["grader_log"]), ("agent", results.FILES["trajectory"])):
        if (folder / marker).exists():
            return phase
    return "setup"


def _sbatch_error(error: Exception) -> str:
    """sbatch's complaint on one line (its first error line names what it refused)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(dict.fromkeys(lines)) or type(error).__name__


def _reason(reason: str) -> str:
    return f" ({reason})" if reason and reason != "None" else ""


def _tail(path: Path, chars: int = 400) -> str:
    try:
        return " ".join(path.read_text(errors="replace")[-chars:].split())
    except OSError:
        return ""
