"""atebench command line: `python runner.py [COMMAND] [OPTIONS]`; `run` is the default command.

Adding a subcommand: write `cmd_x(argv: list[str]) -> int` and add it to COMMANDS.
"""

from __future__ import annotations

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"commands: {', '.join(COMMANDS)} (run `runner.py COMMAND --help`)")
        return 0
    if argv and not argv[0].startswith("-"):
        if argv[0] not in COMMANDS:
            return cli.fail(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
        return COMMANDS[argv[0]](argv[1:])
    return cli.cmd_run(argv)


if __name__ == "__main__":
    sys.exit(main())
