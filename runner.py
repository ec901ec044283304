"""atebench command line: `python runner.py [COMMAND] [OPTIONS]`; `run` is the default command.

Adding a subcommand: write `cmd_x(argv: list[str]) -> int` and add it to COMMANDS and COMMAND_HELP.
"""

from __future__ import annotations

import argparse
import sys

from bench import cli, report_cli

COMMANDS = {
    "run": cli.cmd_run,
    "validate": cli.cmd_validate,
    "list": cli.cmd_list,
    "report": report_cli.cmd_report,
    "compare": report_cli.cmd_compare,
    "profile": report_cli.cmd_profile,
}

COMMAND_HELP = {
    "run": "(the default) run agents on tasks x frameworks, grade them, record results/<run-id>/",
    "validate": "check tasks: the oracle must resolve, nop and the shipped wrong solution must fail",
    "list": "the tasks, frameworks, agents and sandboxes there are",
    "report": "report.md, report.html and summary tables of one or more runs",
    "compare": "exit 1 when a candidate run is measurably worse than a baseline run (a CI gate)",
    "profile": "static agent-friendliness profile of frameworks (written to results/profiles/)",
}

USAGE = """usage: python runner.py [COMMAND] [OPTIONS]

Measure how cheaply a coding agent can work with an ML training framework: run agents on tasks,
grade them with hidden tests, and compare effort (turns, tokens, cost, time) across frameworks.

examples:
  python runner.py --task smoke                                  # seconds: the oracle agent on the smoke task
  python runner.py --task add-new-model --framework reference    # minutes: a real task family
  python runner.py report RUN_ID                                 # tables and charts of a run
"""


def usage() -> str:
    commands = "\n".join(f"  {name:<9} {COMMAND_HELP[name]}" for name in COMMANDS)
    run = cli.run_parser()
    run.usage, run.description = argparse.SUPPRESS, None
    options = run.format_help().strip().removeprefix("options:").strip("\n")
    return (
        f"{USAGE}\ncommands (`python runner.py COMMAND --help` shows each one's options):\n{commands}\n\n"
        f"options of run:\n{options}\n"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv and not argv[0].startswith("-"):
        if argv[0] not in COMMANDS:
            return cli.fail(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
        return COMMANDS[argv[0]](argv[1:])
    return cli.cmd_run(argv)


if __name__ == "__main__":
    sys.exit(main())
