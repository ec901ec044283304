"""A run: tasks x frameworks x agents x trials, in parallel, resumable, with live progress.

Why results are written per trial as they finish: a run can take days and cost real money; Ctrl-C or
a crash must keep every finished trial, and --resume must never re-pay for one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from bench import results, slurm, specs, workspace
from bench.agents import DEFAULT_AGENT, AgentSpec
from bench.gpu import GpuAllocator, detect_gpus, gpus_per_trial
from bench.metrics import Metrics
from bench.pricing import load_prices
from bench.sandbox import docker_unavailable_reason
from bench.sandbox.local import NO_BWRAP, bwrap_available
from bench.trial import Trial, TrialConfig


class RunError(Exception):
    """The run cannot start; the message says why and how to fix it."""


@dataclass
class RunConfig:
    task: str = "smoke"
    framework: str = "reference"
    agents: list[str] = field(default_factory=lambda: [DEFAULT_AGENT])
    model: str | None = None
    trials: int = 1
    parallel: int = 1
    sandbox: str = "local"
    isolate: bool = True  # local sandbox: bubblewrap; False only when the user passes --no-isolate
    run_id: str = ""
    resume: bool = False
    replay: str | None = None
    base_url: str | None = None
    measure_throughput: bool = True
    results_dir: str = "results"
    specs_root: str | None = None  # folder holding tasks/ and frameworks/; None: this repository
    gpus: int | None = None  # GPUs per trial (exclusive); None: what each task and framework ask for
    share_gpus: int = 1  # validate --share-gpus: trials one GPU may serve at once (1: exclusive)
    command: str = "run"  # the runner.py command that made the run: "run" or "validate" (its resume differs)
    mutants: int = 0  # validate --mutants: mutants graded per task (run.json keeps it, so a resume draws the same)
    seed: int = 0  # validate --seed: which mutants
    executor: str = "local"  # "local": a thread pool on this machine; "slurm": one Slurm job per trial
    slurm_partition: str | None = None
    slurm_account: str | None = None
    slurm_qos: str | None = None
    slurm_args: list[str] = field(default_factory=list)  # --slurm-arg KEY=VALUE, as given

    def slurm_options(self) -> slurm.SlurmOptions:
        return slurm.SlurmOptions(
            partition=self.slurm_partition, account=self.slurm_account, qos=self.slurm_qos, args=tuple(self.slurm_args)
        )


@dataclass
class Plan:
    trials: list[TrialConfig]
    skipped: list[str]  # one line per framework (or task x framework) left out, with the reason
    frameworks: list[str] = field(default_factory=list)  # the frameworks that have trials in the plan


def framework_unavailable(
    framework: specs.FrameworkSpec, tasks: list[specs.Task], sandbox: str, gpus: list[int], per_trial: int | None = None
) -> str | None:
    """Why this host can run none of these tasks on `framework`, or None (then `task_unavailable` says which
    single tasks it cannot: a GPU-only framework's questions still run on a CPU host)."""
    needed = min(gpus_per_trial(framework, task.spec if task else None, per_trial) for task in tasks or [None])
    if needed > len(gpus):
        return f"needs {needed} GPU(s), this machine has {len(gpus)}"
    if sandbox == "docker":
        return docker_unavailable_reason()
    return None


def task_unavailable(
    framework: specs.FrameworkSpec, task: specs.Task, gpus: list[int], per_trial: int | None = None
) -> str | None:
    """Why this host cannot run `task` on `framework` (more GPUs than it has), or None."""
    needed = gpus_per_trial(framework, task.spec, per_trial)
    return f"needs {needed} GPU(s), this machine has {len(gpus)}" if needed > len(gpus) else None


def gpus_below_need(framework: specs.FrameworkSpec, task: specs.Task, per_trial: int | None) -> str | None:
    """Why `--gpus` gives `task` fewer GPUs than it needs on `framework` (its checks would skip, and a validation
    would call the task invalid for it), or None."""
    needed = gpus_per_trial(framework, task.spec)
    if per_trial is not None and per_trial < needed:
        return f"needs {needed} GPU(s) a trial, --gpus gives it {per_trial}"
    return None


def isolation_problem(cfg: RunConfig) -> str | None:
    """Why the local sandbox cannot isolate as asked, or None. Never a silent fall-back to plain bash.
    Under Slurm the nodes run the sandboxes: a node without bubblewrap fails its trial's setup, saying so."""
    if cfg.executor == "local" and cfg.sandbox == "local" and cfg.isolate and not bwrap_available():
        return NO_BWRAP
    return None


def make_plan(cfg: RunConfig, agents: dict[str, AgentSpec]) -> Plan:
    """Every trial of the run, each holding its agent's spec; a task an agent has nothing for is skipped
    with the spec's reason (e.g. `wrong` on a task that ships no wrong patch)."""
    problem = isolation_problem(cfg)
    if problem:
        raise RunError(problem)
    root = Path(cfg.specs_root) if cfg.specs_root else specs.REPO_ROOT
    task_ids = specs.select_tasks(cfg.task, root)
    tasks = [specs.load_task(t, root) for t in task_ids]
    names = specs.list_frameworks(root) if cfg.framework == "all" else [cfg.framework]
    frameworks = [specs.load_framework(n, root) for n in names]
    gpus = detect_gpus()
    skipped, trials = [], []
    prices = load_prices()
    allocator = GpuAllocator(gpus, share=cfg.share_gpus)
    for framework in frameworks:
        if framework.source.kind == "bundled" and not framework.bundled_path().is_dir():
            raise RunError(
                f"framework {framework.name!r}: its bundled source folder {framework.bundled_path()} does "
                "not exist; fix source.path in its framework.toml (or the ATEBENCH_SRC_* override)"
            )
        # under Slurm the cluster has the GPUs and Docker engines, not this host: the jobs ask for them
        reason = (
            framework_unavailable(
                framework, [t for t in tasks if framework.name in t.frameworks()], cfg.sandbox, gpus, cfg.gpus
            )
            if cfg.executor == "local"
            else None
        )
        if reason and cfg.framework != "all":
            raise RunError(f"framework {framework.name!r} cannot run here: {reason}")
        if reason:
            # GPU-only tasks on a host without the GPUs: one line each, so a user sees which tasks did not run
            ours = [t for t in tasks if framework.name in t.frameworks()]
            by_task = {t.id: task_unavailable(framework, t, gpus, cfg.gpus) for t in ours}
            if ours and all(by_task.values()):
                skipped += [f"skipping {task_id} on {framework.name}: {why}" for task_id, why in by_task.items()]
            else:
                skipped.append(f"skipping framework {framework.name}: {reason}")
            continue
        for task in tasks:
            if framework.name not in task.frameworks():
                skipped.append(f"skipping {task.id} on {framework.name}: the task has no version for it")
                continue
            reason = gpus_below_need(framework, task, cfg.gpus) or (
                task_unavailable(framework, task, gpus, cfg.gpus) if cfg.executor == "local" else None
            )
            if reason:
                skipped.append(f"skipping {task.id} on {framework.name}: {reason}")
                continue
            variant = task.variant(framework.name)
            for agent in agents.values():
                reason = agent.skip_reason(variant)
                if reason:
                    skipped.append(f"skipping {agent.name} on {task.id} / {framework.name}: {reason}")
                    continue
                for index in range(cfg.trials):
                    trials.append(
                        TrialConfig(
                            run_id=cfg.run_id,
                            variant=variant,
                            framework=framework,
                            agent=agent,
                            index=index,
                            results_root=Path(cfg.results_dir),
                            sandbox=cfg.sandbox,
                            isolate=cfg.isolate,
                            prices=prices,
                            gpu_allocator=allocator,
                            measure_throughput=cfg.measure_throughput,
                            gpus=cfg.gpus,
                        )
                    )
    if not trials:
        raise RunError("nothing to run: " + ("; ".join(skipped) or "no task matches"))
    included = list(dict.fromkeys(t.framework.name for t in trials))
    return Plan(trials=trials, skipped=skipped, frameworks=included)


class Progress:
    """Live table on a terminal (trial i of n, phase, elapsed); one plain line per phase change otherwise."""

    def __init__(self, console: Console, trials: list[Trial], first_index: int = 1, total: int | None = None):
        self.console = console
        total = total if total is not None else len(trials)
        self.rows = {
            id(t): {
                "label": _label(t.config),
                "index": f"{first_index + i}/{total}",
                "state": "queued",
                "started": None,
                "ended": None,
                "turns": 0,
                "cost": 0.0,
            }
            for i, t in enumerate(trials)
        }
        self.lock = threading.Lock()
        self.live = (
            Live(console=console, refresh_per_second=2, get_renderable=self._table) if console.is_terminal else None
        )

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.__exit__(*exc)

    def event(self, trial: Trial, event: dict) -> None:
        with self.lock:
            row = self.rows[id(trial)]
            kind = event["kind"]
            line = None
            if kind == "phase":
                if row["started"] is None:
                    row["started"] = time.monotonic()
                row["state"] = event["phase"]
                line = f"{event['phase']} (at {_elapsed(row)})"
            elif kind == "assistant":
                row["turns"] = max(row["turns"], event.get("turn") or row["turns"] + 1)
                row["cost"] += event.get("cost_usd") or 0.0
            elif kind == "finished":
                row["state"], row["ended"] = event["status"], time.monotonic()
                line = (
                    event["status"]
                    + (f" after {_elapsed(row)}" if row["started"] is not None else " (never started)")
                    + (f" - {event['error']}" if event.get("error") else "")
                )
            elif kind == "log":
                line = event["message"]
            if not self.live and line:
                self.console.print(f"[{row['index']}] {row['label']}: {line}", highlight=False)

    def _table(self) -> Table:
        with self.lock:
            table = Table(title="atebench run")
            for column in ("#", "trial", "phase", "elapsed", "turns", "cost $"):
                table.add_column(column, justify="right" if column in ("elapsed", "turns", "cost $") else "left")
            for row in self.rows.values():
                table.add_row(
                    row["index"], row["label"], row["state"], _elapsed(row), str(row["turns"]), f"{row['cost']:.2f}"
                )
            return table


def _elapsed(row: dict) -> str:
    if row["started"] is None:
        return "-"
    seconds = int((row["ended"] or time.monotonic()) - row["started"])
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _label(cfg: TrialConfig) -> str:
    return f"{cfg.variant.task.id} / {cfg.framework.name} / {cfg.agent_name} #{cfg.index}"


def results_dir_option(results_dir: str | Path) -> str:
    """` --results-dir DIR` when DIR is not the default, so printed commands work as shown."""
    if Path(results_dir).resolve() == results.RESULTS_ROOT.resolve():
        return ""
    return f" --results-dir {shlex.quote(str(results_dir))}"


def resume_command(cfg: RunConfig) -> str:
    command = "validate " if cfg.command == "validate" else ""
    return f"python runner.py {command}--run-id {cfg.run_id} --resume{results_dir_option(cfg.results_dir)}"


def execute(cfg: RunConfig, plan: Plan, console: Console | None = None) -> list[dict]:
    """Run the plan; finished trials are skipped on resume. Ctrl-C, SIGTERM or SIGHUP mark running
    trials interrupted (resumable), remove their workspaces and exit. Under Slurm a probe job checks
    first that jobs can write into the run folder (slurm.SlurmError when they cannot, nothing submitted)."""
    console = console or Console()
    run_dir = Path(cfg.results_dir) / cfg.run_id
    slurm_run = slurm.SlurmRun(run_dir, cfg.run_id, cfg.slurm_options(), console) if cfg.executor == "slurm" else None
    if slurm_run and any(_unfinished(t.folder) for t in plan.trials):  # a resume with nothing to run: no probe
        existed = run_dir.exists()
        previous = _install_slurm_interrupt(slurm_run, cfg, console)
        try:
            slurm_run.probe()
        except slurm.SlurmError:
            if not existed:  # a failed probe leaves no run behind: the same command works once it is fixed
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        finally:
            _restore(previous)
    rel_paths = [
        str(results.trial_path(t.variant.task.id, t.framework.name, t.agent_name, t.index)) for t in plan.trials
    ]
    if cfg.resume:  # an extended run keeps the trials it had
        old = results.read_run(Path(cfg.results_dir), cfg.run_id)
        rel_paths = list(dict.fromkeys((old["trials"] if old else []) + rel_paths))
    # the run's arguments: not the invocation's --resume, and no machine paths in results
    args = {k: v for k, v in asdict(cfg).items() if k not in ("results_dir", "resume")}
    results.write_run(Path(cfg.results_dir), cfg.run_id, args, rel_paths)
    console.print(f"frameworks included: {', '.join(plan.frameworks) or 'none'}", highlight=False)
    for line in plan.skipped:
        console.print(line, highlight=False)
    if cfg.sandbox == "local" and not cfg.isolate:
        console.print(
            "WARNING: --no-isolate: agents run as plain processes on this host; they can read its files, "
            "environment and network. Use it for trusted agents only.",
            style="bold red",
            highlight=False,
        )
    todo = []
    for config in plan.trials:
        if cfg.resume and results.is_finished(config.folder, warn=lambda m: console.print(m, highlight=False)):
            continue
        todo.append(config)
    done = len(plan.trials) - len(todo)
    console.print(
        f"run {cfg.run_id}: {len(plan.trials)} trial(s), {done} already finished, {len(todo)} to run -> {run_dir}",
        highlight=False,
    )
    trials = [Trial(config, on_event=lambda t, e: progress.event(t, e)) for config in todo]
    progress = Progress(console, trials)
    if slurm_run:
        execute_slurm(slurm_run, cfg, trials, progress, console)
        return results.load_results(Path(cfg.results_dir), cfg.run_id)

    def run_one(trial: Trial):
        if not trial.interrupted:
            progress.event(trial, {"kind": "phase", "phase": "setup"})
        return trial.run()

    previous = _install_interrupt(trials, cfg, console)
    try:
        with progress, ThreadPoolExecutor(max_workers=max(1, cfg.parallel)) as pool:
            futures = [pool.submit(run_one, t) for t in trials]
            for future in as_completed(futures):
                future.result()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return results.load_results(Path(cfg.results_dir), cfg.run_id)


def _unfinished(folder: Path) -> bool:
    """What --resume will run (results.is_finished, without setting a corrupt folder aside yet)."""
    try:
        found = results.read_result(folder)
    except results.CorruptResult:
        return True
    return found is None or found["status"] not in results.FINISHED


def execute_slurm(run: slurm.SlurmRun, cfg: RunConfig, trials: list[Trial], progress: Progress, console: Console):
    """The plan's unfinished trials as Slurm jobs: submit, watch until every job has ended.
    Ctrl-C, SIGTERM or SIGHUP cancel every job this invocation submitted (their trials stay resumable)."""
    if not trials:
        return
    if cfg.parallel > 1:
        console.print(
            "slurm: --parallel is for the local executor; the cluster decides how many jobs run at once "
            "(--slurm-arg array_parallelism=N caps it)",
            highlight=False,
        )
    previous = _install_slurm_interrupt(run, cfg, console)
    try:
        run.cancel_leftovers(trials)
        submitted = run.submit(trials)
        console.print(
            f"slurm: {len(submitted)} job(s) submitted: {', '.join(sorted(set(submitted.values()))[:8])}"
            + (" ..." if len(submitted) > 8 else ""),
            highlight=False,
        )
        with progress:
            run.watch(submitted, progress.event)
    finally:
        _restore(previous)


def _restore(handlers: dict) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say_and_exit(signum: int, done: str, cfg: RunConfig, console: Console) -> None:
    """The interrupt handlers' last words (`done`: what the handler did first), then exit 128 + the signal's number
    at once."""
    console.show_cursor(True)  # the live table hides it, and no __exit__ will run
    console.print(
        f"\ninterrupted ({signal.Signals(signum).name}); {done}finished trials are kept. "
        f"Resume with: {resume_command(cfg)}",
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)


def _install_slurm_interrupt(run: slurm.SlurmRun, cfg: RunConfig, console: Console) -> dict:
    """On Ctrl-C, SIGTERM or SIGHUP: cancel the run's jobs (each marks its trial interrupted on the
    node), say how to resume, exit 128 + the signal's number."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        cancelled = run.cancel_all()
        _say_and_exit(signum, f"cancelled {cancelled} Slurm job(s) of the run; ", cfg, console)

    return {signum: signal.signal(signum, handler) for signum in INTERRUPT_SIGNALS}


def _install_interrupt(trials: list[Trial], cfg: RunConfig, console: Console) -> dict:
    """On Ctrl-C, SIGTERM or SIGHUP: mark running trials interrupted, remove their temporary workspaces,
    say how to resume, exit 128 + the signal's number at once (130 for Ctrl-C).

    Why os._exit: worker threads may sit in a minutes-long sandbox command; waiting for them would
    make Ctrl-C feel dead. Nothing after the handler runs, so it does the cleanup itself.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        for trial in trials:  # running ones are marked interrupted; queued ones will not start
            trial.interrupt(signal.Signals(signum).name)
        for trial in trials:
            if trial.scratch is not None:
                workspace.remove_tree(trial.scratch)
        _say_and_exit(signum, "", cfg, console)

    return {signum: signal.signal(signum, handler) for signum in INTERRUPT_SIGNALS}


RESULT_COLUMNS = ("turns", "tokens", "cost $", "agent s", "trial s")
RESULT_CAPTION = "agent s: the agent's wall time; trial s: the whole trial (setup, agent, grading, throughput)"


def result_table(rows: list[dict]) -> Table:
    table = Table(title="results", caption=RESULT_CAPTION, box=box.SIMPLE_HEAD)
    for column in ("task", "framework", "agent", "trial", "status", *RESULT_COLUMNS):
        numeric = column == "trial" or column in RESULT_COLUMNS
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        m = Metrics.from_json(r["metrics"])
        cost = "-" if m.cost_usd is None else f"{m.cost_usd:.2f}"
        status = r["status"] + (f" ({r['error']['phase']})" if r["error"] else "")
        table.add_row(
            r["task"],
            r["framework"],
            r["agent"],
            str(r["trial"]),
            status,
            str(m.agent_turns),
            str(m.total_tokens),
            cost,
            f"{m.wall_time_s:.1f}",
            _trial_seconds(r),
        )
    return table


def _trial_seconds(result: dict) -> str:
    """finished_at - started_at (whole seconds, as recorded), or '-' for a trial that did not finish."""
    if not result.get("started_at") or not result.get("finished_at"):
        return "-"
    seconds = datetime.fromisoformat(result["finished_at"]) - datetime.fromisoformat(result["started_at"])
    return f"{seconds.total_seconds():.0f}"


def summary_line(rows: list[dict]) -> str:
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in results.STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trials"
