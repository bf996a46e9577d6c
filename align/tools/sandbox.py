"""The built-in `python` tool's sandbox: the model's code runs in a fresh Python subprocess with
limits on CPU time, memory (address space), wall-clock time, file size and open files, in an
empty temporary folder, with no stdin, a minimal environment, and `socket` disabled.

What it does NOT protect against: this is resource containment for honest mistakes (an endless
loop, a huge list, a stray download), not a security boundary. The code runs as your user and
can read any file you can, start processes, and open network connections through anything but
Python's `socket` module (ctypes, a subprocess). For code you do not trust, run the whole
training in a container or VM without network and credentials.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

# Run before the model's code: no sockets, then the code itself from stdin-free argv.
PRELUDE = """
import socket as _socket
def _no_network(*args, **kwargs):
    raise PermissionError("network access is disabled in the align python sandbox")
_socket.socket = _no_network
_socket.create_connection = _no_network
del _socket, _no_network
"""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 5
    memory_mb: int = 512
    wall_seconds: float = 10.0
    output_chars: int = 2000
    file_mb: int = 16


@dataclass(frozen=True)
class SandboxResult:
    output: str  # stdout, then stderr's last lines when the code failed (truncated to the limit)
    status: str  # ok | error | cpu | memory | timeout

    @property
    def text(self) -> str:
        """What the model reads."""
        if self.status == "ok":
            return self.output
        reason = {
            "error": "the code raised an error",
            "cpu": "the code used more CPU time than allowed and was stopped",
            "memory": "the code used more memory than allowed and was stopped",
            "timeout": "the code ran longer than allowed and was stopped",
        }[self.status]
        return f"Error: {reason}.\n{self.output}".rstrip()


def _limit(limits: Limits):
    def apply() -> None:
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * 1024 * 1024,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


CUT = "\n... (output cut)"


def _truncate(text: str, limit: int) -> str:
    """At most `limit` characters, saying so when cut."""
    return text if len(text) <= limit else text[: limit - len(CUT)] + CUT


def run_python(code: str, limits: Limits = Limits()) -> SandboxResult:
    """Run `code` under `limits`; every outcome is a result, never an exception."""
    with tempfile.TemporaryDirectory(prefix="align-sandbox-") as folder:
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", PRELUDE + "\n" + code],
            cwd=folder,
            env={"PATH": "/usr/bin:/bin", "HOME": folder, "PYTHONIOENCODING": "utf-8"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_limit(limits),
            start_new_session=True,  # its own process group: a timeout kills whatever it started
            text=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            return SandboxResult(_truncate(stdout, limits.output_chars), "timeout")
    code_ = process.returncode
    if code_ == 0:
        return SandboxResult(_truncate(stdout, limits.output_chars), "ok")
    if code_ in (-signal.SIGXCPU, -signal.SIGKILL) and "Traceback" not in stderr:
        status = "cpu"
    elif "MemoryError" in stderr:
        status = "memory"
    else:
        status = "error"
    tail = "\n".join(stderr.strip().splitlines()[-3:])
    return SandboxResult(_truncate(f"{stdout}{tail}".strip(), limits.output_chars), status)
