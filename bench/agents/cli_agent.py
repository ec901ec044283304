"""What the installed CLI agents (Claude Code, Codex) share: the pinned install, the metering proxy,
the long-running process in the sandbox, limits, and the outcome built from the proxy's records.

Why one base: both CLIs run the same way (a headless process in the sandbox whose only way out is the
host proxy's socket), and both must be measured by the same code; each CLI module only says how to
start it, what its output lines mean and where its transcripts are.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from bench.agents.spec import AgentSetupError
from bench.keys import host_keys, redact_value
from bench.llm import PROVIDERS, parse_model
from bench.llm_proxy import (
    SANDBOX_RUN_DIR,
    SOCKET_NAME,
    CallRecord,
    LLMProxy,
    api_error_counts,
    call_event,
    limit_reached,
    metered_turns,
    relay_prelude,
    write_forwarder,
)
from bench.pricing import PRICES_PATH, cost_usd, load_prices, turn_model
from bench.sandbox.local import Bind
from bench.types import AgentContext, AgentOutcome, truncate
from bench.workspace import cache_dir, remove_tree

CLI_DIR_INSIDE = "/atebench-cli"
HOME_INSIDE = "/atebench-home"
RELAY_PORT = 18080
MAX_EVENT_CHARS = 10_000
MAX_TRANSCRIPT_BYTES = 64 * 2**20
MAX_LINE_BYTES = 16 * 2**20  # read at a time from the CLI's output, and the longest line taken as one event
NPM_TIMEOUT_S = 900


class CLIUnavailable(ValueError):
    """The CLI cannot be installed or found (no npm, no network, a failed install): one clear message."""


def cli_cache() -> Path:
    """$ATEBENCH_CLI_CACHE, else the harness cache's cli/ (kept apart so a per-run ATEBENCH_CACHE reuses it)."""
    return Path(os.environ.get("ATEBENCH_CLI_CACHE") or cache_dir() / "cli")


def pinned_version(variable: str, pinned: str) -> str:
    """The version to install: `pinned`, unless the environment variable `variable` names another."""
    version = os.environ.get(variable, "").strip()
    if version and not re.fullmatch(r"[0-9A-Za-z.+-]+", version):
        raise CLIUnavailable(f"{variable}={version!r} is not an npm version (e.g. {pinned}); unset it or fix it")
    return version or pinned


def npm_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


@dataclass(frozen=True)
class CLIPackage:
    """A pinned npm package and the native binary inside it that the agent runs (no Node at run time)."""

    name: str
    """The install folder's name: <cli cache>/<name>@<version>."""
    package: str
    version: str
    binary: str
    """The binary's path inside the install folder."""

    @property
    def root(self) -> Path:
        return cli_cache() / f"{self.name}@{self.version}"

    def installed(self) -> bool:
        return os.access(self.root / self.binary, os.X_OK)

    def ensure_installed(self, log=print) -> Path:
        """Install with npm on first use (once per machine, under a lock); returns the install folder."""
        if self.installed():
            return self.root
        npm = shutil.which("npm")
        if npm is None:
            raise CLIUnavailable(
                f"the {self.name} agent runs {self.package}@{self.version}, installed with npm, which "
                f"is not on PATH: install Node.js and npm (e.g. apt-get install nodejs npm), or put "
                f"an install at {self.root}"
            )
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / f".{self.name}@{self.version}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.installed():
                return self.root
            log(f"installing {self.package}@{self.version} into {self.root} (once; a few hundred MB)")
            partial = Path(tempfile.mkdtemp(prefix=f".{self.name}-partial-", dir=self.root.parent))
            try:
                result = subprocess.run(
                    [
                        npm,
                        "install",
                        "--prefix",
                        str(partial),
                        "--cache",
                        str(partial / ".npm"),
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                        f"{self.package}@{self.version}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=NPM_TIMEOUT_S,
                )
                if result.returncode != 0 or not os.access(partial / self.binary, os.X_OK):
                    raise CLIUnavailable(
                        f"npm install {self.package}@{self.version} failed (exit {result.returncode}; "
                        f"{self.binary} {'missing' if result.returncode == 0 else 'not built'}): "
                        f"{(result.stderr or result.stdout)[-1500:]}"
                    )
                shutil.rmtree(partial / ".npm", ignore_errors=True)
                shutil.rmtree(self.root, ignore_errors=True)
                partial.rename(self.root)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
        return self.root


def provider_key(model: str) -> str:
    """The host's key for `model`'s provider (checked by the spec before any trial)."""
    provider = parse_model(model)[0]
    return os.environ.get(PROVIDERS[provider][0], "")


def copy_regular_files(src: Path, dest: Path, suffix: str, within: Path) -> list[str]:
    """Copy the regular files named *`suffix` below `src`, a folder inside `within` that the agent's processes
    could write (its home), so never follow a link nor open a FIFO: `src` and every folder on the way to it
    from `within` must be real folders (a link there, say to the host user's own ~/.claude/projects, copies
    nothing), and so must every folder walked. Returns the copied paths relative to `src`."""
    here = within
    for part in src.relative_to(within).parts:
        here = here / part
        if here.is_symlink() or not here.is_dir():
            return []
    root = os.path.realpath(src)
    copied = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        if os.path.realpath(dirpath) != root and not os.path.realpath(dirpath).startswith(root + os.sep):
            continue
        for name in filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if not name.endswith(suffix) or not stat.S_ISREG(st.st_mode) or st.st_size > MAX_TRANSCRIPT_BYTES:
                continue
            rel = path.relative_to(src)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                target.write_bytes(f.read(MAX_TRANSCRIPT_BYTES))
            copied.append(str(rel))
    return sorted(copied)


def cli_agent_spec(
    name: str,
    options,
    providers: tuple[str, ...],
    needs_model: str,
    wrong_provider: str,
    make_agent,
    package: CLIPackage,
):
    """The spec of a CLI agent: a model of one of its `providers`, else one error naming the flag
    (`needs_model` / `wrong_provider`, the latter formatted with the given --model); the key checked and
    the CLI installed before any trial."""
    from bench.agents.spec import AgentSpec
    from bench.llm import check_key

    if not options.model:
        raise ValueError(needs_model)
    if parse_model(options.model)[0] not in providers:
        raise ValueError(wrong_provider.format(model=options.model))
    model, base_url = options.model, options.base_url

    def ready() -> None:
        check_key(model)
        package().ensure_installed()

    def build(trial):
        return make_agent(model, base_url, read_only=trial.variant.task.spec.grading.kind == "answer")

    return AgentSpec(name, build, model=model, check_ready=ready)


class _Stop(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class CLIAgent:
    """One trial of an installed CLI agent. Subclasses set `name`, `package`, `routes`, `inject_header` and
    write `command`, `env`, `on_line` and `transcripts`."""

    name = "cli"
    package: CLIPackage
    upstream_default = ""
    routes: tuple[str, ...] = ()
    """The calls the CLI makes to its provider ("POST /v1/messages"): the metering proxy forwards only these
    (bench/llm_proxy.refusal_for), so the sandbox cannot use the host's key for anything else."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        prices_path=PRICES_PATH,
        poll_s: float = 0.1,
        read_only: bool = False,
    ):
        self.model = model
        self.read_only = read_only
        """A read-only task (a Q&A task): the CLI runs without its edit tools, as ATE-Bench ran it. The
        answer grader still fails any change to the workspace, whatever tool made it."""
        self.api_model = parse_model(model)[1]
        self.upstream = base_url or self.upstream_default
        self.prices = load_prices(prices_path)
        self.poll_s = poll_s
        self.outcome: AgentOutcome | None = None
        self.ctx: AgentContext | None = None
        self.proxy: LLMProxy | None = None
        self.keys: list[str] = []
        self.stop: _Stop | None = None
        self.result_line: dict | None = None
        self._calls: dict[str, tuple[str | None, float]] = {}
        """Tool calls seen and not yet answered: id -> (tool name, when seen)."""

    # --- what each CLI says ---

    def inject(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def command(self, binary: str, instruction: str) -> str:
        """The shell command that runs the CLI headless (after the forwarder is up), placeholder key inline."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def prepare_home(self, home: Path) -> None:
        """Write what the CLI reads from its fresh home before it starts (Codex's config)."""

    def on_line(self, line: dict) -> None:
        """One JSON line the CLI printed: record what matters as trajectory events."""

    read_only_workspace = False
    """True: on a read-only task the CLI sees its workspace read-only (for a CLI without a switch that
    drops its edit tools); False: `command` drops them."""

    transcript_dir = ""
    """Below the CLI's home: where its own transcript files (*.jsonl) are, copied into the trial folder."""

    def cli_totals(self) -> dict[str, int] | None:
        """The CLI's own token totals for the session (input, output, cache_read, cache_write in atebench's
        convention), when its log has them: cross-checked against the proxy, never used as metrics."""
        return None

    # --- the run ---

    def record(self, kind: str, **data) -> None:
        """Append to the trajectory, redacted; a `tool_result` gets its call's tool name and duration (from
        when the call and its result were seen), as the builtin agent's results have them."""
        if kind == "assistant":
            for call in data.get("tool_calls") or []:
                self._calls[str(call.get("id"))] = (call.get("name"), time.time())
        elif kind == "tool_result":
            name, issued = self._calls.pop(str(data.get("tool_call_id")), (None, None))
            data = {"name": name, **data, "duration_s": None if issued is None else round(time.time() - issued, 3)}
        self.ctx.trajectory.append(kind, **redact_value(data, self.keys))

    def run(self, ctx: AgentContext) -> AgentOutcome:
        if self.outcome is not None:
            raise RuntimeError(f"a {type(self).__name__} runs one trial; build a fresh one for the next")
        self.ctx, self.keys = ctx, host_keys()
        outcome = self.outcome = AgentOutcome(exit_status="agent_error", model=self.model, started_at=time.time())
        trial_dir = ctx.trajectory.path.parent
        scratch = Path(tempfile.mkdtemp(prefix="atebench-cli-"))  # short: a unix socket path has ~100 bytes
        spawned = None
        try:
            if not hasattr(ctx.sandbox, "spawn") or not getattr(ctx.sandbox, "isolated", False):
                raise AgentSetupError(
                    f"the {self.name} agent runs only behind a sandbox's wall (--sandbox docker, or "
                    f"--sandbox local with bubblewrap), not with --no-isolate: its commands are the model's"
                )
            if not self.routes:
                raise AgentSetupError(f"the {self.name} agent names no `routes`: its proxy would forward any call")
            run_dir, home = scratch / "run", scratch / "home"
            run_dir.mkdir()
            home.mkdir()
            os.chmod(home, 0o777)
            write_forwarder(run_dir)
            self.prepare_home(home)
            self.proxy = LLMProxy(
                run_dir / SOCKET_NAME,
                self.upstream,
                self.inject(provider_key(self.model)),
                trial_dir / "llm_calls.jsonl",
                on_record=self._on_record,
                admit=self._admit,
                routes=self.routes,
            ).start()
            binary = f"{CLI_DIR_INSIDE}/{self.package.binary}"
            command = self.command(binary, ctx.instruction)
            self.record(
                "system",
                model=self.model,
                agent=self.name,
                cli=f"{self.package.package}@{self.package.version}",
                command=command.replace(ctx.instruction, "<instruction>"),
                read_only=self.read_only,
                limits=ctx.limits.model_dump(),
            )
            self.record("user", content=ctx.instruction)
            spawned = ctx.sandbox.spawn(
                relay_prelude(RELAY_PORT) + command,
                env=self.env(),
                binds=[
                    Bind(str(run_dir), SANDBOX_RUN_DIR),
                    Bind(str(self.package.root), CLI_DIR_INSIDE),
                    Bind(str(home), HOME_INSIDE, writable=True),
                ],
                output_path=trial_dir / f"{self.name}.stdout.jsonl",
                workdir_writable=not (self.read_only and self.read_only_workspace),
            )
            code = self._follow(spawned)
            if self.stop:
                raise self.stop
            self._finished(code)
        except _Stop as e:
            outcome.exit_status = e.status
            self.record("limit", exit_status=e.status, message=e.message)
        except AgentSetupError as e:
            outcome.error = str(e)
            self.record("error", message=outcome.error)
        except KeyboardInterrupt:
            outcome.exit_status = "interrupted"
            self.record("interrupted", message="the run was interrupted")
            raise
        except Exception as e:
            outcome.error = redact_value(f"{self.name} agent crashed: {type(e).__name__}: {e}", self.keys)
            self.record("error", message=outcome.error, traceback=traceback.format_exc())
        finally:
            if spawned is not None:
                spawned.kill()
            if self.proxy is not None:
                self.proxy.close()
                self._count(outcome)
                self._cross_check(outcome)
            home = scratch / "home"
            copied = copy_regular_files(home / self.transcript_dir, trial_dir / "transcripts", ".jsonl", within=home)
            if copied:
                self.record("note", message=f"{self.name} transcripts copied to transcripts/: {', '.join(copied)}")
            remove_tree(scratch)  # the agent wrote into its home: any depth, any permissions
            outcome.ended_at = time.time()
            self.record("exit", exit_status=outcome.exit_status, error=outcome.error)
        return outcome

    def _follow(self, spawned) -> int:
        """Tail the CLI's output until it exits, a limit stops it, or the wall time is up; its exit code."""
        limits, started = self.ctx.limits, self.outcome.started_at
        offset, pending = 0, b""
        while True:
            code = spawned.poll()
            with open(spawned.output_path, "rb") as f:
                f.seek(offset)
                data = f.read(MAX_LINE_BYTES)
            offset += len(data)
            *lines, pending = (pending + data).split(b"\n")
            for raw in lines:
                self._line(raw)
            if len(pending) > MAX_LINE_BYTES:  # no JSON line of a CLI is this long: a process wrote junk to its stream
                self._line(pending[:MAX_EVENT_CHARS])
                pending = b""
            if len(data) == MAX_LINE_BYTES:
                continue  # more is waiting: read it before anything else
            if code is not None:
                if pending:
                    self._line(pending)
                return code
            if self.stop:
                return -1
            elapsed = time.time() - started
            if elapsed >= limits.wall_time_s:
                self.stop = _Stop("limit_time", f"{elapsed:.1f} s reached limits.wall_time_s={limits.wall_time_s}")
                return -1
            time.sleep(self.poll_s)

    def _line(self, raw: bytes) -> None:
        text = raw.decode(errors="replace").strip()
        if not text:
            return
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            self.record("cli_output", text=truncate(text, MAX_EVENT_CHARS))
            return
        if isinstance(line, dict):
            self.on_line(line)

    def _finished(self, code: int) -> None:
        """The CLI exited by itself: done (exit 0 and no error result), else an agent error naming why."""
        result = self.result_line or {}
        if code == 0 and not result.get("is_error"):
            self.outcome.exit_status = "submitted"
            return
        why = result.get("subtype") or result.get("result") or result.get("message") or ""
        with open(self.ctx.trajectory.path.parent / f"{self.name}.stdout.jsonl", "rb") as out:
            out.seek(max(0, out.seek(0, os.SEEK_END) - 800))
            tail = out.read().decode(errors="replace")
        self.outcome.error = redact_value(
            f"{self.name} exited with code {code}{f' ({why})' if why else ''}; the end of its output: {tail}", self.keys
        )
        self.record("error", message=self.outcome.error)

    def _admit(self, record: CallRecord) -> str | None:
        """Checked before each call goes upstream, as the builtin agent checks before each API call."""
        reached = limit_reached(self.ctx.limits, self.model, self.prices, metered_turns(self.proxy.records))
        if reached and self.stop is None:
            self.stop = _Stop(*reached)
        return reached[1] if reached else None

    def _on_record(self, record: CallRecord) -> None:
        """Each call as it ends: the CLI's own lines cannot be matched to calls reliably, so the usage of
        a turn is shown here (with its turn number and cost), not on the `assistant` events."""
        event = call_event(record)
        if record.ok and record.usage is not None:
            u = record.usage
            event["turn"] = len(metered_turns(self.proxy.records))
            model = turn_model(self.model, record.model)
            event["cost_usd"] = cost_usd(model, self.prices, u.input, u.output, u.cache_read, u.cache_write)
        self.record("llm_call", **event)
        if record.failed:
            self.record(
                "api_error",
                status=record.status,
                message=truncate(record.error or "", 2000),
                retry_after=record.retry_after,
            )

    def _cross_check(self, outcome: AgentOutcome) -> None:
        """A difference between the CLI's own totals and the proxy's is a note: the proxy's numbers stand."""
        cli = self.cli_totals()
        if cli is None:
            return
        turns = outcome.turns
        proxy = {
            "input": sum(t.input_tokens for t in turns),
            "output": sum(t.output_tokens for t in turns),
            "cache_read": sum(t.cache_read_tokens for t in turns),
            "cache_write": sum(t.cache_write_tokens for t in turns),
        }
        differ = {k: (cli[k], proxy[k]) for k in proxy if k in cli and cli[k] != proxy[k]}
        if differ:
            self.record(
                "note",
                message=f"{self.name}'s own token totals differ from the proxy's (cli, proxy): "
                f"{differ}; the metrics use the proxy's",
            )

    def _count(self, outcome: AgentOutcome) -> None:
        """Turns, tokens and API errors from the proxy's records: the one source of truth."""
        outcome.turns = metered_turns(self.proxy.records)
        outcome.api_errors, outcome.api_retries = api_error_counts(self.proxy.records)
