"""The `report`, `compare` and `profile` subcommands of runner.py: argument parsing and exit codes only.

Exit codes: 0 success (compare: no regression), 1 compare found a regression, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import compare, profile, report, report_html, results, specs, workspace
from bench.cli import fail, parse_args

RESULTS_ROOT = results.RESULTS_ROOT


def cmd_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="runner.py report", description="Tables, figures and trajectory pages for runs."
    )
    parser.add_argument("runs", nargs="+", help="run ids under results/ or paths to run directories")
    parser.add_argument("--out", type=Path, help="output folder (default: <first run>/report)")
    parser.add_argument("--reference-framework", default="reference", help="framework the others are compared to")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--profile", type=Path, help="profile.json written by `runner.py profile`, shown as a table")
    parser.add_argument(
        "--compute-profile",
        action="store_true",
        help="compute the static profile of each framework in the runs (may build source caches)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_ROOT, help="where run ids are looked up (default: results/)"
    )
    parser.add_argument(
        "--specs-root",
        type=Path,
        default=specs.REPO_ROOT,
        help="with --compute-profile: folder holding tasks/ and frameworks/ (default: this repository)",
    )
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    if not 0.0 < args.confidence < 1.0:
        return fail(f"--confidence {args.confidence} must be strictly between 0 and 1 (e.g. 0.95)")
    for run in args.runs:
        folder = Path(run) if Path(run).is_dir() else args.results_dir / run
        if (folder / "profile.json").is_file() and not (folder / "run.json").is_file():
            return fail(
                f"{folder} is a profile (written by `runner.py profile`), not a run; "
                f"show it in a run's report with --profile {folder / 'profile.json'}"
            )
    try:
        run_dirs, trials = report.load_runs(args.runs, args.results_dir)
        profiles, note = _profiles(args, sorted({t["framework"] for t in trials}))
        mutation = report.mutation_scores(run_dirs)
    except (report.ReportInputError, profile.ProfileInputError, specs.SpecError, workspace.WorkspaceError) as e:
        return fail(str(e))
    out = args.out or run_dirs[0] / "report"
    summaries = report.write_tables(
        out,
        run_dirs,
        trials,
        args.reference_framework,
        args.confidence,
        profile.markdown(profiles) if profiles else None,
    )
    html = report_html.write_html(
        out, [d.name for d in run_dirs], trials, summaries, args.reference_framework, profiles, note, mutation
    )
    print(f"{len(trials)} trials -> {out / 'report.md'}, {html}, {out / 'summary.csv'}, {out / 'summary.json'}")
    return 0


def _profiles(args: argparse.Namespace, frameworks: list[str]) -> tuple[list[dict] | None, str | None]:
    if args.profile:
        if not args.profile.is_file():
            raise profile.ProfileInputError(
                f"--profile {args.profile} does not exist; write it with `runner.py profile`"
            )
        data = json.loads(args.profile.read_text())
        return (data["profiles"] if isinstance(data, dict) else data), None
    if not args.compute_profile:
        return (
            None,
            "No profile given: run `runner.py profile --framework all` and pass --profile, or use --compute-profile.",
        )
    known = set(specs.list_frameworks(args.specs_root))
    profiles = [profile.profile_framework(name, specs_root=args.specs_root) for name in frameworks if name in known]
    unknown = [name for name in frameworks if name not in known]
    return profiles, (f"No framework spec for: {', '.join(unknown)}" if unknown else None)


def _split_metrics(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def cmd_compare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="runner.py compare", description="Fail (exit 1) when CANDIDATE is measurably worse than BASELINE."
    )
    parser.add_argument("baseline", help="run id under results/ or run directory (e.g. from main)")
    parser.add_argument("candidate", help="run id under results/ or run directory (e.g. from the PR)")
    parser.add_argument("--threshold-rel", type=float, default=0.2, help="relative worsening that counts (0.2 = 20%%)")
    parser.add_argument("--confidence", type=float, default=0.95, help="certainty needed to call a regression")
    parser.add_argument(
        "--metrics",
        default=",".join(compare.DEFAULT_METRICS),
        help="comma-separated: turns, active_gpu_s, success, or any result metric key",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_ROOT, help="where run ids are looked up (default: results/)"
    )
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    try:
        base_dirs, base = report.load_runs([args.baseline], args.results_dir)
        cand_dirs, cand = report.load_runs([args.candidate], args.results_dir)
        rows = compare.compare(base, cand, _split_metrics(args.metrics), args.threshold_rel, args.confidence)
    except (report.ReportInputError, compare.CompareInputError) as e:
        return fail(str(e))
    text = compare.markdown(rows, args.threshold_rel, args.confidence, base_dirs[0].name, cand_dirs[0].name)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 1 if any(r.verdict == "REGRESSION" for r in rows) else 0


def _gold_diffs(items: list[str]) -> dict[str, str]:
    """`TASK=FILE` or `FILE` (the task is then the file name without extension)."""
    gold = {}
    for item in items:
        task, _, file = item.rpartition("=") if "=" in item else (Path(item).stem, "", item)
        path = Path(file)
        if not path.is_file():
            raise profile.ProfileInputError(f"--gold-diff {item}: {path} is not a file; pass TASK=FILE or FILE")
        gold[task] = path.read_text()
    return gold


def cmd_profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="runner.py profile", description="Static agent-friendliness profile.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--framework", help="a framework under frameworks/, or 'all'")
    where.add_argument("--path", type=Path, help="any checkout directory")
    parser.add_argument("--entry", help="entry file relative to the checkout (default: the framework's known entry)")
    parser.add_argument(
        "--gold-diff",
        action="append",
        default=[],
        metavar="TASK=FILE",
        help="with --path: a task's gold diff (repeatable)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for profile.json and profile.md (default: results/profiles/<timestamp>/, apart from the runs)",
    )
    parser.add_argument(
        "--specs-root",
        type=Path,
        default=specs.REPO_ROOT,
        help="folder holding tasks/ and frameworks/ (default: this repository)",
    )
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    try:
        if args.path:
            profiles = [
                profile.profile_tree(
                    args.path, None, args.entry, _gold_diffs(args.gold_diff), shown_path=args.path.name
                )
            ]
        else:
            if args.gold_diff:
                return fail("--gold-diff goes with --path; with --framework the tasks' gold solutions are used")
            names = specs.list_frameworks(args.specs_root) if args.framework == "all" else [args.framework]
            if not names:
                return fail("no frameworks found under frameworks/ (each needs a framework.toml)")
            profiles = [profile.profile_framework(name, args.entry, args.specs_root) for name in names]
    except (profile.ProfileInputError, specs.SpecError, workspace.WorkspaceError) as e:
        return fail(str(e))
    if args.out is None:
        args.out = RESULTS_ROOT / results.PROFILES_FOLDER / results.new_run_id()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.json").write_text(json.dumps({"profiles": profiles}, indent=2) + "\n")
    text = profile.markdown(profiles)
    (args.out / "profile.md").write_text(text)
    print(text)
    print(f"-> {args.out / 'profile.json'}")
    return 0
