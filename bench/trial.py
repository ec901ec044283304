"""One trial end to end: workspace, sandbox, agent, diff, grade, throughput, result.json.

Why phases with their own error label: a failure must say where it happened (setup, agent, grade,
throughput) and must never erase what earlier phases produced (trajectory, diff, logs stay on disk).
"""

from __future__ import annotations

import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from bench import answers, grading, results, throughput, workspace
from bench.agents.spec import AgentSetupError, AgentSpec, TrialInputs
from bench.gpu import GpuAllocator, GpuSampler, gpus_per_trial
from bench.keys import redact, redact_files
from bench.metrics import trial_metrics
from bench.pricing import Price
from bench.sandbox import SandboxError, open_sandbox
from bench.specs import FrameworkSpec, TaskVariant
from bench.types import Agent, AgentContext, AgentOutcome, TrajectoryWriter

SIGNAL_RACE_S = 2.0
"""How long before an interrupt a trial's error may be the interrupt's own doing (Trial.interrupt)."""


@dataclass
class TrialConfig:
    """What a trial needs from its run."""

    run_id: str
    variant: TaskVariant
    framework: FrameworkSpec
    agent: AgentSpec  # builds this trial's agent from its inputs
    index: int
    results_root: Path
    sandbox: str = "local"
    isolate: bool = True
    prices: dict[str, Price] = field(default_factory=dict)
    gpu_allocator: GpuAllocator | None = None
    measure_throughput: bool = True  # False: the run's --no-throughput
    cache: Path | None = None
    gpus: int | None = None  # GPUs per trial; None: what the task and framework ask for

    @property
    def throughput_wanted(self) -> bool:
        """Whether a resolved trial has a throughput phase: the run did not pass --no-throughput and the task
        changes something a benchmark shows (task.toml measure_throughput). Either "no" is a choice made
        before the run, so it leaves no note; run.json and task.toml say which."""
        return self.measure_throughput and self.variant.task.spec.measure_throughput

    @property
    def agent_name(self) -> str:
        return self.agent.name

    @property
    def model(self) -> str | None:
        return self.agent.model

    @property
    def folder(self) -> Path:
        return (
            self.results_root
            / self.run_id
            / results.trial_path(self.variant.task.id, self.framework.name, self.agent_name, self.index)
        )

    def new_result(self) -> results.TrialResult:
        """The result a trial starts from: which trial it is, nothing measured yet."""
        return results.TrialResult(
            run_id=self.run_id,
            task=self.variant.task.id,
            task_family=self.variant.task.family,
            framework=self.framework.name,
            agent=self.agent_name,
            model=self.model,
            trial=self.index,
        )


class TrialFailed(Exception):
    def __init__(self, phase: str, message: str):
        super().__init__(message)
        self.phase, self.message = phase, message


class Trial:
    """Runs once; `interrupt()` (from the Ctrl-C handler) marks it resumable and freezes its result."""

    def __init__(self, config: TrialConfig, on_event=None):
        self.config = config
        self.folder = config.folder
        self.on_event = on_event or (lambda trial, event: None)
        self.phase = "setup"
        self._phase_started: float | None = None  # time.monotonic() when the current phase began
        self.result: results.TrialResult | None = None
        self._lock = threading.Lock()
        self._frozen = False
        self._stopped = False  # set by interrupt(); checked before the trial starts
        self._failed_at: float | None = None  # time.monotonic() when the trial ended in error
        self._sandbox = None  # the agent's sandbox while the agent runs
        self._open: list = []  # every sandbox this trial opened and has not closed (agent, grading, throughput)
        self._workspace: workspace.Workspace | None = None  # the trial's trees, once setup made them
        self._gpus: list[int] = []
        self.scratch: Path | None = None  # the trial's temporary folder; an interrupt handler removes it

    # ---- result file ----

    def _save(self) -> None:
        with self._lock:
            if not self._frozen:
                results.write_json_atomic(self.folder / "result.json", self.result.to_json())

    def interrupt(self, cause: str = "SIGINT") -> None:
        """`cause`: the signal's name (SIGINT for Ctrl-C, SIGTERM, SIGHUP). A trial not yet started never
        starts (its folder stays as it was, so --resume runs it); a finished one is left alone.

        One race is settled here: a signal that reaches the trial's own processes too (Ctrl-C in a terminal
        signals the foreground process group; Slurm's scancel signals every process of the job) can kill a
        command the trial is waiting on, so the trial ends in error a moment before this handler runs. An error
        recorded less than SIGNAL_RACE_S before the interrupt is taken as the signal's doing: the trial is
        labelled interrupted, the error kept in its notes."""
        with self._lock:
            self._stopped = True
            if self._frozen or self.result is None:
                return
            racing = (
                self.result.status == "error"
                and self._failed_at is not None
                and time.monotonic() - self._failed_at < SIGNAL_RACE_S
            )
            if self.result.status != "running" and not racing:
                return
            if racing:
                self.result.notes.append(
                    f"ended in error as it was being interrupted, most likely by the same {cause} reaching its "
                    f"processes: {self.result.error['phase']}: {self.result.error['message']}"
                )
            self._end_phase()
            self.result.status, self.result.exit_status = "interrupted", "interrupted"
            self.result.error = {"phase": self.phase, "message": f"interrupted ({cause}); run again with --resume"}
            results.write_json_atomic(self.folder / "result.json", self.result.to_json())
            self._frozen = True
        for sandbox in list(self._open):
            self._close(sandbox)
        if self.phase == "agent" and self._workspace and not racing:  # (an ended trial recorded its diff itself)
            self._record_diff(self._workspace)  # what the agent had done when it was stopped

    @property
    def interrupted(self) -> bool:
        return self._stopped

    def _close(self, sandbox) -> None:
        """Close a sandbox and its processes; a failure is logged in agent.log, never silently dropped."""
        try:
            sandbox.close()
        except Exception as e:  # a dead daemon, an engine error, processes that would not die: log and go on
            with open(self.folder / results.FILES["agent_log"], "a") as f:
                f.write(f"closing the sandbox failed: {type(e).__name__}: {redact(str(e))}\n")
        finally:
            if sandbox in self._open:
                self._open.remove(sandbox)

    def _record_diff(self, ws: workspace.Workspace) -> workspace.TreeDiff:
        diff = workspace.tree_diff(ws.prepared, ws.work)
        (self.folder / results.FILES["diff"]).write_text(redact(diff.patch))
        return diff

    # ---- the trial ----

    def run(self) -> results.TrialResult | None:
        """The trial's result; None when an interrupt came first (nothing was started or written)."""
        cfg = self.config
        with self._lock:  # an interrupt either sees this trial running, with its scratch, or stops it here
            if self._stopped:
                return None
            self._reset_folder()
            self.result = cfg.new_result()
            results.write_json_atomic(self.folder / "result.json", self.result.to_json())
            scratch = Path(tempfile.mkdtemp(prefix="atebench-trial-"))
            self.scratch = scratch
        gpus_needed = gpus_per_trial(cfg.framework, cfg.variant.task.spec, cfg.gpus)
        try:
            if gpus_needed:
                if cfg.gpu_allocator is None:
                    raise TrialFailed("setup", f"the task needs {gpus_needed} GPU(s) but no GPU allocator was given")
                self._gpus = cfg.gpu_allocator.acquire(gpus_needed)
            self._run_phases(scratch)
        except TrialFailed as e:
            self._fail(e.phase, e.message)
        except Exception as e:  # a harness bug must still end as a labelled error, not a lost trial
            self._fail(self.phase, f"{type(e).__name__}: {e}")
            (self.folder / "harness_error.log").write_text(traceback.format_exc())
        finally:
            if self._gpus:
                cfg.gpu_allocator.release(self._gpus)
                self._gpus = []
            workspace.remove_tree(scratch)  # the agent's tree: any depth, any permissions
            self._end_phase()
        self.result.finished_at = results.now_iso()
        redact_files(self.folder)  # the last sweep: whatever wrote a file of this trial, no secret stays
        self._save()
        error = self.result.error
        self.on_event(
            self,
            {
                "kind": "finished",
                "status": self.result.status,
                "error": f"{error['phase']}: {error['message']}" if error else None,
            },
        )
        return self.result

    def _reset_folder(self) -> None:
        """A re-run (resume) starts from an empty folder; what an earlier attempt recorded is never
        deleted but moved aside whole, to `<trial>.<its status>-<n>` (results.set_aside)."""
        if self.folder.is_dir() and any(self.folder.iterdir()):
            results.set_aside(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _fail(self, phase: str, message: str) -> None:
        with self._lock:  # interrupt() reads the status and this clock together
            self.result.fail(phase, redact(message))
            self._failed_at = time.monotonic()

    def _enter(self, phase: str) -> None:
        """Start `phase`: close the previous phase's clock, start this one's, tell the progress display
        (the run announces setup itself, when the trial starts: before any wait for GPUs)."""
        self._end_phase()
        self.phase, self._phase_started = phase, time.monotonic()
        if phase != "setup":
            self.on_event(self, {"kind": "phase", "phase": phase})

    def _end_phase(self) -> None:
        if self._phase_started is not None:
            self.result.phase_seconds[self.phase] = round(time.monotonic() - self._phase_started, 3)
            self._phase_started = None

    def _run_phases(self, scratch: Path) -> None:
        cfg = self.config
        variant, framework = cfg.variant, cfg.framework
        self._enter("setup")
        try:
            ws = workspace.prepare(variant, framework, scratch / "workspace", cfg.cache)
            self._workspace = ws
            agent = cfg.agent.build(TrialInputs(variant, framework, ws))
            self._sandbox = self._open_sandbox(ws.work)
        except (workspace.WorkspaceError, SandboxError, AgentSetupError) as e:
            raise TrialFailed("setup", str(e)) from None

        self._enter("agent")
        trajectory = _ObservedTrajectory(self.folder / results.FILES["trajectory"], self)
        outcome = self._run_agent(trajectory, agent)
        try:
            self._sandbox.check_alive()
            sandbox_problem = None
        except SandboxError as e:
            sandbox_problem = str(e)
        workdir = self._sandbox.workdir  # the path the agent saw: its absolute citations are under it
        self._close(self._sandbox)
        self._sandbox = None
        self.result.exit_status = outcome.exit_status
        diff = self._record_diff(ws)
        if diff.left_out:
            self.result.notes.append(
                f"left out of agent.diff (over {workspace.MAX_DIFF_FILE_BYTES // 2**20} MiB, past "
                f"{workspace.MAX_DIFF_TOTAL_BYTES // 2**20} MiB in all, or not a regular file), "
                f"still graded: {', '.join(diff.left_out[:20])}"
            )
        self._save()
        if outcome.exit_status == "agent_error":
            raise TrialFailed("agent", outcome.error or "the agent failed without a message")
        if sandbox_problem:
            raise TrialFailed("agent", sandbox_problem)

        self._enter("grade")
        if variant.answer_key is not None:  # a Q&A task: the agent's answer, not its tree, is graded
            grade = answers.grade(
                variant,
                trajectory.read(),
                diff.files,
                ws.prepared,
                self.folder / results.FILES["grader_log"],
                workdir=workdir,
            )
        else:
            grade = grading.grade(
                variant,
                ws.work,
                diff.files,
                self._open_sandbox,
                self.folder / results.FILES["grader_log"],
                baseline=ws.prepared,
                original=ws.original,
                gpus=len(self._gpus),
            )
        self.result.grade = grade.to_json()
        if grade.error:
            raise TrialFailed("grade", grade.error)
        self.result.status = "resolved" if grade.resolved else "unresolved"
        self._save()

        if grade.resolved and cfg.throughput_wanted:
            self._enter("throughput")
            measured, notes = self._throughput(ws)
            self.result.metrics = self.result.metrics.with_throughput(measured)
            self.result.notes.extend(notes)

    def _open_sandbox(self, workdir: Path):
        cfg = self.config
        sandbox = open_sandbox(
            cfg.sandbox,
            workdir,
            cfg.framework,
            cfg.variant.task.spec.resources,
            self._gpus,
            isolate=cfg.isolate,
            log=lambda message: self.on_event(self, {"kind": "log", "message": message}),
        )
        self._open.append(sandbox)
        if self._frozen:  # interrupted while this one was starting
            self._close(sandbox)
            raise SandboxError("the run was interrupted")
        return sandbox

    def _run_agent(self, trajectory: TrajectoryWriter, agent: Agent) -> AgentOutcome:
        cfg = self.config
        ctx = AgentContext(
            instruction=cfg.variant.instruction(),
            sandbox=self._sandbox,
            limits=cfg.variant.task.spec.limits,
            trajectory=trajectory,
        )
        sampler = GpuSampler(self._gpus).start() if self._gpus else None
        started = time.time()
        try:
            outcome = agent.run(ctx)
        except Exception as e:  # an agent bug ends as agent_error, its traceback in agent.log
            message = f"the agent crashed: {type(e).__name__}: {e}"
            trajectory.append("error", message=redact(message))
            (self.folder / results.FILES["agent_log"]).write_text(redact(traceback.format_exc()))
            outcome = AgentOutcome(exit_status="agent_error", error=message, model=cfg.model)
        if outcome.started_at is None:
            outcome.started_at, outcome.ended_at = started, time.time()
        gpu = sampler.stop() if sampler else None
        self.result.metrics = trial_metrics(outcome, trajectory.read(), cfg.prices, gpu)
        log = self.folder / results.FILES["agent_log"]
        with open(log, "a") as f:
            f.write(
                f"exit_status: {outcome.exit_status}\nturns: {len(outcome.turns)}\n"
                f"error: {redact(outcome.error or '')}\n"
            )
        return outcome

    def _throughput(self, ws: workspace.Workspace) -> tuple[dict, list[str]]:
        """The task's benchmark, `repeats` runs in the trial's sandbox: (metrics, notes).

        Nothing measurable, or a failed run, is a note in the result, never a failed trial.
        """
        cfg = self.config
        planned = throughput.plan(cfg.variant, cfg.framework, len(self._gpus))
        if isinstance(planned, str):
            return {}, [planned]
        command, spec = planned
        try:
            if spec.restore_from_original:
                throughput.restore_originals(spec, ws.original, ws.work)
            sandbox = self._open_sandbox(ws.work)
        except (FileNotFoundError, workspace.WorkspaceError, SandboxError) as e:
            return {}, [f"throughput not measured: {e}"]
        runs = []
        try:
            for i in range(spec.repeats):
                result = sandbox.execute(command, timeout=spec.timeout_s)
                with open(self.folder / results.FILES["agent_log"], "a") as f:
                    f.write(
                        f"\n$ {command}  # throughput run {i + 1} of {spec.repeats}\n[exit {result.exit_code}]\n"
                        f"{result.output[-20000:]}\n"
                    )
                parsed = throughput.parse_run(result.output)
                if parsed is None:
                    return {}, [
                        f"throughput not measured: run {i + 1} of `{command}` exited {result.exit_code} "
                        "without exactly one JSON line holding tokens_per_s (see agent.log)"
                    ]
                runs.append(parsed)
                self.on_event(
                    self,
                    {
                        "kind": "log",
                        "message": f"throughput run {i + 1} of {spec.repeats}: "
                        f"{parsed['tokens_per_s']:.0f} {throughput.UNIT}",
                    },
                )
        finally:
            self._close(sandbox)
        return throughput.metrics(runs, command), []


class _ObservedTrajectory(TrajectoryWriter):
    """The trajectory writer, also telling the run's progress display about turns and cost."""

    def __init__(self, path: Path, trial: Trial):
        super().__init__(path)
        self.trial = trial

    def append(self, kind: str, **data) -> None:
        super().append(kind, **data)
        self.trial.on_event(self.trial, {"kind": kind, **{k: data[k] for k in ("turn", "cost_usd") if k in data}})
