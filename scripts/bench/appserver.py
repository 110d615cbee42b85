"""A Streamlit server for browser checks (the browser tests, scripts.bench.first_answer and
server_load)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")  # the headless browser the checks drive (apt-get install chromium)
PYCACHE = REPO / ".venv" / "pycache"  # where `make` keeps byte code (PYTHONPYCACHEPREFIX)


def bytecode_env(env: dict[str, str], on: bool) -> dict[str, str]:
    """`env` with byte code written and read under PYCACHE as `make` does, or (off) never written."""
    env = dict(env)
    if on:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def store_env(prefix: str, bytecode: bool = True) -> dict[str, str]:
    """This process's environment for a server on a fresh, empty store (a new temporary folder
    named `prefix`...: as right after a clone), offline, with byte code as `make` keeps it
    (`bytecode_env`)."""
    store_dir = tempfile.mkdtemp(prefix=prefix)
    return bytecode_env({**os.environ, "EMOTION_ARTIFACTS": store_dir, "HF_HUB_OFFLINE": "1"},
                        bytecode)


def flags(port: int) -> list[str]:
    """Streamlit options for a local, headless server on 127.0.0.1:`port`."""
    return ["--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless",
            "true", "--browser.gatherUsageStats", "false"]


def command(port: int, *extra: str) -> list[str]:
    """The app's server as users start it (`make app`: scripts.run_app), on 127.0.0.1:`port`."""
    return [sys.executable, "-m", "scripts.run_app", *flags(port), *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Return once the server at `url` answers its health check; raise if it exits or is late."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


def demo_job(env: dict[str, str], action: str) -> None:
    """Start the quick demo job in the store of `env` (as `make run`), or ("cancel") cancel it."""
    code = ("from emotion_core import jobs; jobs.start_demo()" if action == "start" else
            "from emotion_core import jobs; jobs.cancel_job()")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def stop(proc: subprocess.Popen, env: dict[str, str], demo: bool) -> None:
    """End the server `proc` and (`demo`) cancel the demo job started in its store."""
    proc.terminate()
    proc.wait(timeout=20)
    if demo:
        demo_job(env, "cancel")
