"""Compiling untrusted patterns in a helper process before the Event Service does.

Some short patterns crash the ``regex`` compiler outright (``ß{300000}`` with
full case folding ends the process with a segfault) or make it take seconds
and hundreds of megabytes (``(?:a{1000}){2000}``). A subscriber must not be
able to do that to the ES, so each new pattern is first compiled by a small
helper process under a memory limit and a time limit; only patterns that
compile there are compiled in the ES. The helper is restarted when a pattern
kills it.
"""
from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time

__all__ = ["PatternChecker"]

log = logging.getLogger(__name__)

# The helper: announces each pattern's index, compiles it, and reports the
# first failure, or "ok" for the whole request. A crash leaves the last index
# announced as the culprit.
_HELPER = r"""
import json, sys, time
try:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
except (ImportError, ValueError, OSError):
    pass
import regex
flags = regex.IGNORECASE | regex.FULLCASE
limit = float(sys.argv[2])
for line in sys.stdin:
    verdict = "ok"
    for index, pattern in enumerate(json.loads(line)):
        print(index, flush=True)
        started = time.perf_counter()
        try:
            regex.compile(pattern, flags)
        except MemoryError:
            verdict = "bad %d needs too much memory to compile" % index
        except Exception:
            pass  # invalid patterns are reported by the caller's own compile, with the regex error
        else:
            if time.perf_counter() - started > limit:
                verdict = "bad %d takes too long to compile" % index
        if verdict != "ok":
            break
    regex.purge()
    print(verdict, flush=True)
"""


class PatternChecker:
    """Refuses patterns that crash, or cost too much to compile, in a throw-away process.

    :param memory_limit: bytes the helper process may use
    :param compile_seconds: longest compile accepted for one pattern
    """

    def __init__(self, memory_limit: int = 512 * 1024 * 1024, compile_seconds: float = 0.5) -> None:
        self._memory_limit = memory_limit
        self._compile_seconds = compile_seconds
        self._process: subprocess.Popen[bytes] | None = None
        self._pending = b""  # what the helper wrote beyond the last line read
        self._lock = threading.Lock()

    def check(self, patterns: list[str]) -> None:
        """Raise ValueError naming the first pattern that is unsafe to compile."""
        if not patterns:
            return
        with self._lock:
            verdict, index = self._ask(patterns)
        if verdict:
            raise ValueError(f"pattern {patterns[index]!r} refused: {verdict}")

    def close(self) -> None:
        """Stop the helper process."""
        with self._lock:
            self._stop()

    def _ask(self, patterns: list[str]) -> tuple[str, int]:
        process = self._helper()
        assert process.stdin is not None  # Popen(stdin=PIPE) made it
        deadline = time.monotonic() + self._compile_seconds * 4 + 0.01 * len(patterns) + 5
        current = 0
        try:
            process.stdin.write(json.dumps(patterns).encode() + b"\n")
            process.stdin.flush()
            while True:
                line = self._read_line(process, deadline)
                if line is None:
                    self._stop()
                    return "compiling it took too long", current
                if not line:
                    self._stop()
                    return "compiling it crashed the regex engine", current
                if line == "ok":
                    return "", 0
                if line.startswith("bad "):
                    _, index, reason = line.split(" ", 2)
                    return reason, int(index)
                current = int(line)
        except (OSError, ValueError) as error:
            self._stop()
            log.warning("pattern helper failed (%s) while checking %r", error, patterns[current])
            return "the pattern could not be checked safely", current

    def _read_line(self, process: subprocess.Popen[bytes], deadline: float) -> str | None:
        """The next line ('' at EOF), or None when the deadline passes first."""
        assert process.stdout is not None  # Popen(stdout=PIPE) made it
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
                return None
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                return ""
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode().strip()

    def _helper(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._pending = b""
            self._process = subprocess.Popen(
                [sys.executable, "-c", _HELPER, str(self._memory_limit), str(self._compile_seconds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        return self._process

    def _stop(self) -> None:
        self._pending = b""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
