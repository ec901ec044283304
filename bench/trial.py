"""One trial end to end: workspace, sandbox, agent, diff, grade, throughput, result.json.

Why phases with their own error label: a failure must say where it happened (setup, agent, grade,
throughput) and must never erase what earlier phases produced (trajectory, diff, logs stay on disk).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from bench import grading, results, workspace
from bench.gpu import GpuAllocator, GpuSampler
from bench.keys import redact
from bench.metrics import trial_metrics
from bench.pricing import Price
from bench.sandbox import SandboxError, open_sandbox
from bench.specs import FrameworkSpec, TaskVariant
from bench.types import AgentContext, AgentOutcome, Limits, TrajectoryWriter


@dataclass
class TrialConfig:
    """What a trial needs from its run."""

    run_id: str
    variant: TaskVariant
    framework: FrameworkSpec
    agent_name: str
    agent: object  # bench.types.Agent
    model: str | None
    index: int
    results_root: Path
    sandbox: str = "local"
    isolate: bool | None = None
    prices: dict[str, Price] = field(default_factory=dict)
    gpu_allocator: GpuAllocator | None = None
    replay_path: Path | None = None
    solution: str = "gold"  # oracle: "gold" or "wrong" (the task's plausible-wrong patch, for validation)
    patch: str | None = None  # oracle-mutant: the patch it applies instead (bench/mutants.py)
    measure_throughput: bool = True
    cache: Path | None = None
    gpus: int | None = None  # GPUs per trial; None: what the task and framework ask for

    @property
    def folder(self) -> Path:
        return self.results_root / self.run_id / results.trial_path(
            self.variant.task.id, self.framework.name, self.agent_name, self.index)


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
        self.result: dict = {}
        self._lock = threading.Lock()
        self._frozen = False
        self._sandbox = None
        self._gpus: list[int] = []

    # ---- result file ----

    def _save(self) -> None:
        with self._lock:
            if not self._frozen:
                results.write_json_atomic(self.folder / "result.json", self.result)

    def interrupt(self) -> None:
        with self._lock:
            if self._frozen or not self.result or self.result["status"] != "running":
                return
            self.result.update(status="interrupted", exit_status="interrupted",
                               error={"phase": self.phase, "message": "interrupted (Ctrl-C); run again with --resume"})
            results.write_json_atomic(self.folder / "result.json", self.result)
            self._frozen = True
        sandbox = self._sandbox
        if sandbox is not None:
            try:
                sandbox.close()
            except Exception:
                pass

    # ---- the trial ----

    def run(self) -> dict:
        cfg = self.config
        self._reset_folder()
        self.result = results.new_result(cfg.run_id, cfg.variant.task.id, cfg.variant.task.family,
                                         cfg.framework.name, cfg.agent_name, cfg.model, cfg.index)
        self._save()
        scratch = Path(tempfile.mkdtemp(prefix="atebench-trial-"))
        gpus_needed = cfg.gpus if cfg.gpus is not None else max(cfg.variant.task.spec.resources.gpus,
                                                                 cfg.framework.sandbox.gpus)
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
            shutil.rmtree(scratch, ignore_errors=True)
        self.result["finished_at"] = results.now_iso()
        self._save()
        error = self.result["error"]
        self.on_event(self, {"kind": "finished", "status": self.result["status"],
                             "error": f"{error['phase']}: {error['message']}" if error else None})
        return self.result

    def _reset_folder(self) -> None:
        """A re-run (resume) starts from a clean folder; a corrupt result was already kept aside."""
        if self.folder.is_dir():
            for child in self.folder.iterdir():
                if child.name != "result.json.corrupt":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.folder.mkdir(parents=True, exist_ok=True)

    def _fail(self, phase: str, message: str) -> None:
        if self.result["status"] != "error":
            self.result.update(status="error", error={"phase": phase, "message": redact(message)})

    def _run_phases(self, scratch: Path) -> None:
        cfg = self.config
        variant, framework = cfg.variant, cfg.framework
        self.phase = "setup"
        try:
            prepared = workspace.prepared_checkout(variant, framework, cfg.cache)
            work = workspace.create_workspace(variant, framework, scratch / "workspace", cfg.cache)
            patch = self._solution_patch()
            self._sandbox = self._open_sandbox(work)
        except (workspace.WorkspaceError, SandboxError) as e:
            raise TrialFailed("setup", str(e)) from None

        self.phase = "agent"
        self.on_event(self, {"kind": "phase", "phase": "agent"})
        trajectory = _ObservedTrajectory(self.folder / results.FILES["trajectory"], self)
        outcome = self._run_agent(trajectory, patch)
        try:
            self._sandbox.check_alive()
            sandbox_problem = None
        except SandboxError as e:
            sandbox_problem = str(e)
        try:
            self._sandbox.close()
        except Exception:
            pass
        self._sandbox = None
        self.result["exit_status"] = outcome.exit_status
        diff = workspace.tree_diff(prepared, work)
        (self.folder / results.FILES["diff"]).write_text(diff.patch)
        self._save()
        if outcome.exit_status == "agent_error":
            raise TrialFailed("agent", outcome.error or "the agent failed without a message")
        if sandbox_problem:
            raise TrialFailed("agent", sandbox_problem)

        self.phase = "grade"
        self.on_event(self, {"kind": "phase", "phase": "grade"})
        grade = grading.grade(variant, work, diff.files, self._open_sandbox,
                              self.folder / results.FILES["grader_log"],
                              original=workspace.original_source(framework, cfg.cache), gpus=len(self._gpus))
        self.result["grade"] = grade.to_json()
        if grade.error:
            raise TrialFailed("grade", grade.error)
        self.result["status"] = "resolved" if grade.resolved else "unresolved"
        self._save()

        if grade.resolved and cfg.measure_throughput and variant.task.spec.measure_throughput \
                and framework.commands.throughput:
            self.phase = "throughput"
            self.on_event(self, {"kind": "phase", "phase": "throughput"})
            tokens_per_s, note = self._throughput(work)
            self.result["metrics"]["throughput_tokens_per_s"] = tokens_per_s
            if note:
                self.result["error"] = {"phase": "throughput", "message": note}

    def _solution_patch(self) -> str | None:
        cfg = self.config
        if cfg.patch is not None:
            return cfg.patch
        if cfg.agent_name not in ("oracle", "oracle-wrong"):
            return None
        if cfg.solution == "wrong":
            if cfg.variant.wrong_patch is None:
                raise TrialFailed("setup", f"task {cfg.variant.task.id!r} on {cfg.framework.name!r} has no wrong/*.patch")
            return cfg.variant.wrong_patch.read_text()
        return workspace.gold_patch(cfg.variant, cfg.framework, cfg.cache)

    def _open_sandbox(self, workdir: Path):
        cfg = self.config
        return open_sandbox(cfg.sandbox, workdir, cfg.framework, cfg.variant.task.spec.resources, self._gpus,
                            isolate=cfg.isolate, log=lambda message: self.on_event(self, {"kind": "log", "message": message}))

    def _run_agent(self, trajectory: TrajectoryWriter, patch: str | None) -> AgentOutcome:
        cfg = self.config
        spec = cfg.variant.task.spec.limits
        limits = Limits(max_turns=spec.turns, max_tokens=spec.tokens, max_cost_usd=spec.cost_usd,
                        max_wall_s=spec.wall_time_s, command_timeout_s=spec.command_timeout_s)
        ctx = AgentContext(instruction=cfg.variant.task.instruction(cfg.framework.name), sandbox=self._sandbox,
                           limits=limits, trajectory=trajectory, solution_patch=patch, replay_path=cfg.replay_path)
        sampler = GpuSampler(self._gpus).start() if self._gpus else None
        started = time.time()
        try:
            outcome = cfg.agent.run(ctx)
        except Exception as e:
            message = f"the agent crashed: {type(e).__name__}: {e}"
            trajectory.append("error", message=redact(message))
            (self.folder / results.FILES["agent_log"]).write_text(redact(traceback.format_exc()))
            outcome = AgentOutcome(exit_status="agent_error", error=message, model=cfg.model)
        if outcome.started_at is None:
            outcome.started_at, outcome.ended_at = started, time.time()
        gpu = sampler.stop() if sampler else None
        metrics = trial_metrics(outcome, trajectory.read(), cfg.prices, gpu)
        self.result["metrics"].update(metrics)
        log = self.folder / results.FILES["agent_log"]
        with open(log, "a") as f:
            f.write(f"exit_status: {outcome.exit_status}\nturns: {len(outcome.turns)}\n"
                    f"error: {redact(outcome.error or '')}\n")
        return outcome

    def _throughput(self, work: Path) -> tuple[float | None, str | None]:
        """tokens/s from the last JSON line with "tokens_per_s"; a failure is a note, not a failed trial."""
        command = self.config.framework.commands.throughput
        try:
            sandbox = self._open_sandbox(work)
        except SandboxError as e:
            return None, f"throughput not measured: {e}"
        try:
            result = sandbox.execute(command, timeout=self.config.framework.commands.throughput_timeout_s)
        finally:
            sandbox.close()
        with open(self.folder / results.FILES["agent_log"], "a") as f:
            f.write(f"\n$ {command}\n[exit {result.exit_code}]\n{result.output[-20000:]}\n")
        for line in reversed(result.output.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    value = json.loads(line).get("tokens_per_s")
                except (json.JSONDecodeError, AttributeError):
                    continue
                if isinstance(value, (int, float)):
                    return float(value), None
        return None, (f"throughput not measured: `{command}` exited {result.exit_code} without a JSON line "
                      "holding tokens_per_s (see agent.log)")


class _ObservedTrajectory(TrajectoryWriter):
    """The trajectory writer, also telling the run's progress display about turns and cost."""

    def __init__(self, path: Path, trial: Trial):
        super().__init__(path)
        self.trial = trial

    def append(self, kind: str, **data) -> None:
        super().append(kind, **data)
        self.trial.on_event(self.trial, {"kind": kind, **{k: data[k] for k in ("turn", "cost_usd") if k in data}})
