"""Running `crmsync` in the tests: in this process (fast) or as the installed console script.

A `crmsync` subprocess costs 1.5-2 s of CPU, nearly all of it importing; in this process a
command costs only its own work. `in_process` runs cli.main.main exactly as the console
script does (same argument parsing, exit codes, one-line failure boundary, stdout and
stderr captured apart, errors logged to stderr as main() configures it) with the given
environment and working directory, and answers like subprocess.run. Use `console_script`
only where the separate process is the point: the installed entry point, signals, a server
that keeps running, what importing costs.
"""

import asyncio
import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from shutil import which

from cli.main import LOG_FORMAT, main
from cli.output import console
from cli.output import err as errors_console
from core.config import get_settings

CRMSYNC = which("crmsync") or str(Path(sys.executable).with_name("crmsync"))
"""The installed console script, as users run it."""

_ONE_AT_A_TIME = threading.Lock()  # the environment, working directory and stdio are global


def user_env(**settings: str) -> dict[str, str]:
    """The environment a user's shell would have: this one without the suite's CRMSYNC_
    settings, 200 columns wide (no wrapped table rows), plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    return {**env, "COLUMNS": "200", **settings}


def in_process(args: Sequence[str], *, cwd: str | os.PathLike[str],
               env: Mapping[str, str] | None = None,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`crmsync *args` in this process, in directory `cwd`, with exactly the environment
    `env` (default user_env()) and `input` on stdin; the answer of subprocess.run."""
    env = user_env() if env is None else env
    out, err = io.StringIO(), io.StringIO()
    errors = logging.StreamHandler(err)
    errors.setLevel(logging.ERROR)  # what main()'s logging.basicConfig shows
    errors.setFormatter(logging.Formatter(LOG_FORMAT))
    with _ONE_AT_A_TIME:
        saved_env, saved_cwd, saved_stdin = dict(os.environ), os.getcwd(), sys.stdin
        root = logging.getLogger()
        try:
            os.environ.clear()
            os.environ.update(env)
            get_settings.cache_clear()
            os.chdir(cwd)
            sys.stdin = io.StringIO(input or "")
            for printer in (console, errors_console):  # fixed if COLUMNS was set on import
                printer.width = _columns(env)           # (xdist workers set COLUMNS=80)
            root.addHandler(errors)
            with redirect_stdout(out), redirect_stderr(err):
                code = _exit_code(args, err)
        finally:
            root.removeHandler(errors)
            sys.stdin = saved_stdin
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            get_settings.cache_clear()
    return subprocess.CompletedProcess(["crmsync", *args], code, out.getvalue(),
                                       err.getvalue())


def _columns(env: Mapping[str, str]) -> int:
    """The width a command's output has in a process with `env` and no terminal."""
    columns = env.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else 80


def _exit_code(args: Sequence[str], err: io.StringIO) -> int:
    """Run main(args); its exit code. From an async test (a running event loop, where the
    commands' asyncio.run cannot run) in a thread of its own, as a process would."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _main(args, err)
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(_main, args, err).result()


def _main(args: Sequence[str], err: io.StringIO) -> int:
    try:
        main(list(args))
    except SystemExit as exit_:
        if isinstance(exit_.code, str):  # sys.exit("message"): printed, exit code 1
            err.write(exit_.code + "\n")
            return 1
        return exit_.code or 0
    return 0


def console_script(args: Sequence[str], *, cwd: str | os.PathLike[str],
                   env: Mapping[str, str] | None = None, input: str | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`crmsync *args` as its own process: the installed console script."""
    return subprocess.run([CRMSYNC, *args], cwd=cwd, env=user_env() if env is None else env,
                          input=input, capture_output=True, text=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)
