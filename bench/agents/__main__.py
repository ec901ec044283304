"""`python -m bench.agents install-clis`: install the pinned CLI agents into the harness cache ahead of a
run (CI does, so their tests run rather than skip); a run installs them on first use anyway."""

from __future__ import annotations

import sys
import time

from bench.agents import claude_code, codex
from bench.agents.cli_agent import CLIUnavailable

if __name__ == "__main__":
    if sys.argv[1:] != ["install-clis"]:
        sys.exit("usage: python -m bench.agents install-clis")
    failed = False
    for package in (claude_code.package(), codex.package()):
        started = time.monotonic()
        try:
            root = package.ensure_installed()
        except CLIUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            failed = True
            continue
        print(f"{package.package}@{package.version}: {root} ({time.monotonic() - started:.1f} s)")
    sys.exit(1 if failed else 0)
