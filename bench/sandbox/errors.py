"""The one error a sandbox raises when it cannot run commands any more (killed, removed, misconfigured)."""


class SandboxError(Exception):
    """The sandbox is unusable; the message says why and what to do."""
