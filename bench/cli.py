"""The `run`, `validate` and `list` subcommands: argument parsing, one clear error, exit codes.

Exit codes: 0 success, 1 the run finished but something failed (errored trials, an invalid task),
2 bad input (unknown name, missing key, malformed spec or run file), 128 + the signal when interrupted
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench import mutants, results, slurm, specs, workspace
from bench.agents import AGENTS, DEFAULT_AGENT, MUTANT, NOP, ORACLE, VALIDATION_AGENTS, WRONG, AgentOptions, make_specs
from bench.grading import collection_errors, missing_ids, wrong_reason_to_fail
from bench.run import (
    Plan,
    RunConfig,
    RunError,
    execute,
    make_plan,
    result_table,
    results_dir_option,
    resume_command,
    summary_line,
)
from bench.sandbox import SANDBOXES

RESULTS_ROOT = results.RESULTS_ROOT

# run.json arguments that --resume --extend may change (they add trial folders) and those that no
# resume may change (they change how a trial runs, so one run would mix two set-ups).
EXTENDABLE = ("task", "framework", "agents", "trials")
# what a validate --resume takes from run.json (everything that decides its trials and how they run)
VALIDATE_RESUMED = ("task", "framework", "sandbox", "isolate", "specs_root", "gpus", "mutants", "seed", "share_gpus")
FIXED = ("model", "base_url", "replay", "sandbox", "isolate", "measure_throughput", "specs_root", "gpus")


def make_console() -> Console:
    """Wide enough for the result table when output goes to a file or pipe, where lines are never
    wrapped (a printed command or path must stay copy-pasteable)."""
    console = Console()
    return console if console.is_terminal else Console(width=160, soft_wrap=True)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code argparse chose (0 for --help, 2 for a bad option)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)


def add_trial_options(p: argparse.ArgumentParser, task_default: str) -> None:
    """The options `run` and `validate` share: what to run, where, and where results go."""
    p.add_argument("--task", default=task_default, help=f"task id, task family, or 'all' (default: {task_default})")
    p.add_argument("--framework", default="reference", help="framework name or 'all' (default: reference)")
    p.add_argument("--parallel", type=int, default=1, metavar="N", help="trials running at once (default: 1)")
    p.add_argument("--sandbox", default="local", choices=list(SANDBOXES), help="where agent commands run")
    iso = p.add_mutually_exclusive_group()
    iso.add_argument(
        "--isolate",
        dest="isolate",
        action="store_true",
        default=True,
        help="local sandbox: run agents inside bubblewrap (the default; it must be installed)",
    )
    iso.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="local sandbox: plain bash on this host, for trusted agents only (warned on every run)",
    )
    p.add_argument("--run-id", help="name of the run folder under the results folder (default: a timestamp)")
    p.add_argument(
        "--results-dir", metavar="DIR", default=str(RESULTS_ROOT), help="where run folders go (default: results/)"
    )
    p.add_argument(
        "--specs-root", metavar="DIR", help="folder holding tasks/ and frameworks/ (default: this repository)"
    )
    p.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="GPUs each trial holds exclusively; its grading adds the task's GPU ladder steps they cover "
        "(default: what the task asks for)",
    )
    p.add_argument(
        "--executor",
        default="local",
        choices=["local", "slurm"],
        help="local: trials run on this machine (the default); slurm: each trial is a Slurm job, results "
        "written into the run folder, which must be on a filesystem the nodes share (docs/scale-out.md)",
    )
    p.add_argument("--slurm-partition", metavar="NAME", help="--executor slurm: the partition the jobs go to")
    p.add_argument("--slurm-account", metavar="NAME", help="--executor slurm: the account the jobs are charged to")
    p.add_argument("--slurm-qos", metavar="NAME", help="--executor slurm: the jobs' quality of service")
    p.add_argument(
        "--slurm-arg",
        dest="slurm_args",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--executor slurm, repeatable: any sbatch option for the site (constraint=h100, "
        "gres=gpu:h100:1, exclusive=user); time=MINUTES replaces the limit computed from the task",
    )


def _check_trial_options(args: argparse.Namespace) -> str | None:
    """What is wrong with the shared options, or None."""
    if args.run_id:
        try:
            results.check_run_id(args.run_id)
        except ValueError as e:
            return str(e)
    if args.parallel < 1:
        return "--parallel must be at least 1"
    if args.gpus is not None and args.gpus < 0:
        return "--gpus must be 0 or more"
    try:
        slurm.parse_slurm_args(args.slurm_args)
    except ValueError as e:
        return str(e)
    given = [f"--{k.replace('_', '-')}" for k in ("slurm_partition", "slurm_account", "slurm_qos") if getattr(args, k)]
    if args.executor != "slurm" and (given or args.slurm_args):
        return f"{', '.join(given + ['--slurm-arg'] * bool(args.slurm_args))}: add --executor slurm, or drop them"
    if args.executor == "slurm":
        return slurm.slurm_unavailable_reason()
    return None


def slurm_config(args: argparse.Namespace) -> dict:
    """The RunConfig fields of the executor options (the same names, so --resume reads them back)."""
    names = ("executor", "slurm_partition", "slurm_account", "slurm_qos", "slurm_args")
    return {name: getattr(args, name) for name in names}


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runner.py [run]",
        description="Run agents on tasks x frameworks, grade each trial with hidden tests, "
        "and record everything under results/<run-id>/.",
    )
    add_trial_options(p, task_default="smoke")
    p.add_argument("--agent", default=DEFAULT_AGENT, help=f"agent, or several comma-separated: {', '.join(AGENTS)}")
    p.add_argument(
        "--model",
        help="the LLM agents' model, e.g. anthropic/claude-sonnet-4-5; or one per agent: "
        "claude-code=anthropic/claude-sonnet-4-5,codex=openai/gpt-5",
    )
    p.add_argument("--base-url", help="LLM API base URL for the builtin agent (default: the provider's)")
    p.add_argument("--replay", metavar="TRAJECTORY", help="trajectory.jsonl for the replay agent")
    p.add_argument(
        "--trials", type=int, default=1, metavar="N", help="attempts per task x framework x agent (default: 1)"
    )
    p.add_argument(
        "--no-throughput",
        dest="measure_throughput",
        action="store_false",
        help="skip the throughput measurement after resolved trials",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue --run-id with its recorded arguments: skip finished trials, re-run the rest",
    )
    p.add_argument(
        "--extend",
        action="store_true",
        help="with --resume: add trials to the run (another --task, --framework, --agent or more --trials)",
    )
    return p


def cmd_run(argv: list[str]) -> int:
    parser = run_parser()
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    problem = _check_trial_options(args)
    if problem:
        return fail(problem)
    if args.extend and not args.resume:
        return fail("--extend goes with --resume (it adds trials to an existing run)")
    saved = {}
    if args.resume:
        stored = _stored_run(args, "the run folder to continue")
        if isinstance(stored, str):
            return fail(stored)
        if stored["args"].get("command") == "validate":
            return fail(
                f"run {args.run_id!r} was made by validate; continue it with `python runner.py validate "
                f"--run-id {args.run_id} --resume{results_dir_option(args.results_dir)}`"
            )
        known = {f.name for f in fields(RunConfig)}
        saved = {k: v for k, v in stored["args"].items() if k in known and k not in ("resume", "run_id", "results_dir")}
        parser.set_defaults(
            **{k: v for k, v in saved.items() if k != "agents"}, agent=",".join(saved.get("agents", [DEFAULT_AGENT]))
        )
        args = parser.parse_args(argv)
    if args.trials < 1:
        return fail("--trials must be at least 1")
    cfg = RunConfig(
        task=args.task,
        framework=args.framework,
        agents=args.agent.split(","),
        model=args.model,
        trials=args.trials,
        parallel=args.parallel,
        sandbox=args.sandbox,
        isolate=args.isolate,
        run_id=args.run_id or results.new_run_id(),
        resume=args.resume,
        replay=args.replay,
        base_url=args.base_url,
        measure_throughput=args.measure_throughput,
        results_dir=args.results_dir,
        specs_root=args.specs_root,
        gpus=args.gpus,
        **slurm_config(args),
    )
    changed = {k: (saved[k], getattr(cfg, k)) for k in EXTENDABLE + FIXED if k in saved and saved[k] != getattr(cfg, k)}
    if changed:
        shown = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        fixed = [k for k in changed if k in FIXED]
        if fixed:
            return fail(
                f"--resume cannot change how run {cfg.run_id!r} runs its trials ({shown}); "
                f"`{resume_command(cfg)}` alone continues it with its own "
                "arguments, or start a new --run-id"
            )
        if not args.extend:
            return fail(
                f"--resume with arguments that change run {cfg.run_id!r}'s plan ({shown}); "
                f"`{resume_command(cfg)}` alone continues it with its own "
                "arguments; add --extend to add these trials to the run"
            )
    if not args.resume and (Path(cfg.results_dir) / cfg.run_id).exists():
        return fail(f"run {cfg.run_id!r} already exists; pass --resume to continue it or choose another --run-id")
    try:
        agents = make_specs(cfg.agents, AgentOptions(model=cfg.model, base_url=cfg.base_url, replay=cfg.replay))
        plan = make_plan(cfg, agents)
    except (ValueError, specs.SpecError, RunError) as e:
        return fail(str(e))
    console = make_console()
    try:
        rows = execute(cfg, plan, console)
    except slurm.SlurmError as e:
        return fail(str(e))
    console.print(result_table(rows))
    console.print(f"{summary_line(rows)} -> {Path(cfg.results_dir) / cfg.run_id}", highlight=False)
    console.print(f"next: python runner.py report {cfg.run_id}{results_dir_option(cfg.results_dir)}", highlight=False)
    return 1 if any(r["status"] == "error" for r in rows) else 0


def cmd_validate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="runner.py validate", description="Oracle must resolve, nop and the shipped wrong solution must not."
    )
    add_trial_options(p, task_default="all")
    p.add_argument(
        "--mutants",
        type=int,
        default=0,
        help="also grade N mutants of each task's gold and report the share the hidden tests kill (default: 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="which mutants --mutants draws (default: 0)")
    p.add_argument(
        "--share-gpus",
        type=int,
        default=1,
        metavar="K",
        help="lend each GPU to up to K trials at once (default: 1, exclusive); validation judges "
        "correctness only, so a few GPUs can serve many trials; their GPU-time figures then overlap",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the validate run --run-id with its own arguments (the same tasks, mutants and "
        "seed); finished trials are kept, the rest run (--parallel may change)",
    )
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args
    if args.share_gpus < 1:
        return fail(f"--share-gpus must be 1 or more, not {args.share_gpus}")
    if args.share_gpus > 1 and args.executor == "slurm":
        return fail("--share-gpus: under Slurm each trial's job gets its own GPUs from Slurm; drop it")
    problem = _check_trial_options(args)
    if problem:
        return fail(problem)
    if args.resume:
        stored = _stored_run(args, "the validate run to continue")
        if isinstance(stored, str):
            return fail(stored)
        if stored["args"].get("command") != "validate":
            return fail(
                f"run {args.run_id!r} was not made by validate; continue it with "
                f"`python runner.py --run-id {args.run_id} --resume{results_dir_option(args.results_dir)}`"
            )
        saved = {k: v for k, v in stored["args"].items() if k in VALIDATE_RESUMED}
        p.set_defaults(**saved)
        args = p.parse_args(argv)
        changed = [
            f"--{k.replace('_', '-')} {saved[k]!r} -> {getattr(args, k)!r}"
            for k in saved
            if getattr(args, k) != saved[k]
        ]
        if changed:
            return fail(
                f"--resume continues run {args.run_id!r} as it was made ({', '.join(changed)}); drop those "
                "options, or start a new --run-id"
            )
    if args.mutants < 0:
        return fail(f"--mutants must be 0 or more, not {args.mutants}")
    cfg = RunConfig(
        task=args.task,
        framework=args.framework,
        agents=list(VALIDATION_AGENTS),
        trials=1,
        parallel=args.parallel,
        sandbox=args.sandbox,
        isolate=args.isolate,
        run_id=args.run_id or f"validate-{results.new_run_id()}",
        resume=args.resume,
        measure_throughput=False,
        results_dir=args.results_dir,
        specs_root=args.specs_root,
        gpus=args.gpus,
        **slurm_config(args),
        command="validate",
        mutants=args.mutants,
        seed=args.seed,
        share_gpus=args.share_gpus,
    )
    if not args.resume and (Path(cfg.results_dir) / cfg.run_id).exists():
        return fail(f"run {cfg.run_id!r} already exists; pass --resume to continue it or choose another --run-id")
    try:
        plan = make_plan(cfg, make_specs(cfg.agents, AgentOptions()))
    except (ValueError, specs.SpecError, RunError) as e:
        return fail(str(e))
    mutated, by_task = [], {}
    if args.mutants:
        try:
            mutated, by_task = mutants.mutant_trials(
                [t for t in plan.trials if t.agent_name == ORACLE], args.mutants, args.seed
            )
        except workspace.WorkspaceError as e:
            return fail(str(e))
    plan = Plan(trials=plan.trials + mutated, skipped=plan.skipped, frameworks=plan.frameworks)
    console = make_console()
    try:
        rows = execute(cfg, plan, console)
    except slurm.SlurmError as e:
        return fail(str(e))
    table, all_valid = validation_matrix([r for r in rows if r["agent"] != MUTANT])
    console.print(table)
    if args.mutants:
        report = mutants.score(rows, by_task)
        console.print(mutants.score_table(report))
        console.print(
            f"survivors' diffs: {mutants.write_report(report, Path(cfg.results_dir) / cfg.run_id)}", highlight=False
        )
    console.print("all tasks valid" if all_valid else "some tasks are INVALID (see the matrix)", highlight=False)
    return 0 if all_valid else 1


def validation_matrix(rows: list[dict]) -> tuple[Table, bool]:
    cells: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["task"], r["framework"]), {})[r["agent"]] = r
    table = Table(title="validation")
    caption_lines: list[str] = []
    for column in (
        "task",
        "framework",
        f"{ORACLE} (must resolve)",
        f"{NOP} (must fail)",
        f"{WRONG} (must fail)",
        "valid",
    ):
        table.add_column(column)
    all_valid = True
    for (task, framework), by_agent in sorted(cells.items()):

        def show(agent):
            r = by_agent.get(agent)
            return "-" if r is None else r["status"] + (f": {r['error']['message'][:60]}" if r["error"] else "")

        gold = by_agent.get(ORACLE, {}).get("grade")
        never_ran = missing_ids(gold["fail_to_pass"], gold["pass_to_pass"]) if gold else []
        uncollected = collection_errors(gold.get("tests") or []) if gold else []
        if uncollected:  # every id of such a module is missing; the cause is in the grader.log, not grading.toml
            caption_lines.append(
                f"{task} on {framework}: the hidden tests did not collect on the gold solution "
                f"({', '.join(uncollected[:3])}): an import this environment lacks or a broken hidden module; "
                "the oracle trial's grader.log shows the error"
            )
        elif never_ran:  # on the gold tree every graded id must run: a misspelt or unselected id is a spec error
            caption_lines.append(
                f"{task} on {framework}: graded id(s) that never ran on the gold solution (fix "
                f"grading.toml): {', '.join(never_ran[:5])}" + (" ..." if len(never_ran) > 5 else "")
            )
        left_out = (gold or {}).get("not_graded") or []
        if left_out:  # an offline source (sdist) lacks these restored test files: said, not silently skipped
            caption_lines.append(
                f"{task} on {framework}: not graded here (the source lacks them): {', '.join(left_out)}"
            )
        oracle_ok = by_agent.get(ORACLE, {}).get("status") == "resolved" and not never_ran
        nop = by_agent.get(NOP, {})
        nop_wrong = wrong_reason_to_fail(nop["grade"]) if nop.get("grade") else None
        if nop_wrong:
            caption_lines.append(
                f"{task} on {framework}: {NOP} fails for the wrong reason (fix grading.toml): {nop_wrong}"
            )
        nop_ok = nop.get("status") == "unresolved" and not nop_wrong
        wrong_ok = WRONG not in by_agent or by_agent[WRONG]["status"] == "unresolved"
        valid = oracle_ok and nop_ok and wrong_ok
        all_valid &= valid
        table.add_row(task, framework, show(ORACLE), show(NOP), show(WRONG), "yes" if valid else "NO")
    if caption_lines:
        table.caption = Text("\n".join(caption_lines))  # plain text: pytest ids hold [params], not markup
    return table, all_valid


def _stored_run(args: argparse.Namespace, what: str) -> dict | str:
    """--resume's run file (`what`: the run it names, for the error), or the one line that says why there is none."""
    if not args.run_id:
        return f"--resume needs --run-id ({what})"
    try:
        stored = results.read_run(Path(args.results_dir), args.run_id)
    except results.RunFileError as e:
        return str(e)
    if stored is None:
        return f"no run {args.run_id!r} in {args.results_dir}; check the id (ls {args.results_dir})"
    return stored


def cmd_list(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="runner.py list", description="Tasks, frameworks, agents and sandboxes.")
    p.add_argument(
        "--specs-root",
        type=Path,
        default=specs.REPO_ROOT,
        help="folder holding tasks/ and frameworks/ (default: this repository)",
    )
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args
    console = make_console()
    try:
        tasks = [specs.load_task(t, args.specs_root) for t in specs.list_tasks(args.specs_root)]
        frameworks = [specs.load_framework(f, args.specs_root) for f in specs.list_frameworks(args.specs_root)]
    except specs.SpecError as e:
        return fail(str(e))
    table = Table(title="tasks")
    for column in ("task", "family", "frameworks", "description"):
        table.add_column(column)
    for t in tasks:
        table.add_row(t.id, t.family, ", ".join(t.frameworks()), t.spec.description)
    console.print(table)
    table = Table(title="frameworks")
    for column in ("framework", "source", "gpus", "description"):
        table.add_column(column)
    for f in frameworks:
        source = f.source.path if f.source.kind == "bundled" else f"{f.source.url}@{f.source.commit[:10]}"
        table.add_row(f.name, f"{f.source.kind}: {source}", str(f.sandbox.gpus), f.description)
    console.print(table)
    console.print(f"agents: {', '.join(AGENTS)}", highlight=False)
    console.print(f"sandboxes: {', '.join(SANDBOXES)}", highlight=False)
    return 0
