"""The environment every command started through the Makefile gets (`make run`, `make test`)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_byte_code_is_written_under_the_venv_even_where_the_machine_forbids_it(tmp_path) -> None:
    # a recipe of the real Makefile's, run by the interpreter the tests use, on a machine that
    # sets PYTHONDONTWRITEBYTECODE=1: every start would compile torch from source again
    probe = tmp_path / "probe.mk"
    probe.write_text("probe-bytecode:\n\t@\"$(PROBE_PY)\" -c 'import sys; "
                     "print(sys.dont_write_bytecode, sys.pycache_prefix)'\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPYCACHEPREFIX", None)
    out = subprocess.run(["make", "-s", "-C", str(REPO), "-f", "Makefile", "-f", str(probe),
                          "probe-bytecode", f"PROBE_PY={sys.executable}"],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    dont_write, prefix = out.split()
    assert dont_write == "False"
    assert Path(prefix) == REPO / ".venv" / "pycache"  # not beside the sources
    # the first-answer benchmark starts its server the same way, or (off) as without make
    from scripts.bench.appserver import bytecode_env

    on = bytecode_env({"PYTHONDONTWRITEBYTECODE": "1"}, True)
    assert "PYTHONDONTWRITEBYTECODE" not in on and Path(on["PYTHONPYCACHEPREFIX"]) == Path(prefix)
    off = bytecode_env({"PYTHONPYCACHEPREFIX": prefix}, False)
    assert off == {"PYTHONDONTWRITEBYTECODE": "1"}
