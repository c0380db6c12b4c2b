"""``segflow`` commands as a user runs them: a child process (``python -m segflow.cli.main``)
with the test's environment variables on top of this one's, and a timeout.

``cli`` is for the commands a test needs to succeed (its output's last line: a write key, a
token); ``run`` is for those whose exit code, stderr or whole output the test reads::

    key = cli("sources", "create", "web", "--data-dir", str(data))
    bad = run("segments", "create", "x", 'did "', "--data-dir", str(data))
    assert bad.returncode == 2
"""

from __future__ import annotations

import os
import subprocess
import sys

SEGFLOW = (sys.executable, "-m", "segflow.cli.main")


def run(
    *args: str, env: dict[str, str] | None = None, check: bool = False, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """``segflow ARGS`` in a child process; ``env`` is added to this process's environment.
    With ``check``, a non-zero exit fails the test with the command's stderr.

    >>> run("--help").returncode
    0
    """
    done = subprocess.run(
        [*SEGFLOW, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout_s,
    )
    if check:
        assert done.returncode == 0, f"segflow {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done


def cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 120) -> str:
    """The last line ``segflow ARGS`` prints (a key, a token, a summary); a failure fails the
    test with the command's stderr.

    >>> cli("tokens", "create", "--role", "admin", "--data-dir", "data")  # doctest: +SKIP
    'sft_...'
    """
    out = run(*args, env=env, check=True, timeout_s=timeout_s).stdout.strip()
    return out.splitlines()[-1] if out else ""
