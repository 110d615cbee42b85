"""How much a background job slows the app, with and without lowering its session's group.

    python -m scripts.bench.job_priority [--bursts 15] [--work 0.1]

Stands in for Predict answering while `make run`'s demo job trains: a foreground burst of fixed
CPU work (about `--work` seconds on an idle core, pure Python) is timed `--bursts` times with a
pause between (a person's clicks), first with no job, then while a job keeps every core busy,
started in a session of its own as jobs.start_steps does: once with only a nice value on its
processes (the runner before the fix), once with `runner.lower_priority` (nice value plus the
session group's nice value, /proc/self/autogroup). Prints each setting's median and p90 burst
time and its ratio to the idle median, measured in one run (this machine's load varies), and
whether the kernel groups sessions at all. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from emotion_core.jobs.runner import JOB_NICENESS, session_group

_SPIN = "import time\nwhile True: pass\n"
_SETUPS = {
    "plain nice": f"import os\nos.nice({JOB_NICENESS})\n",
    "lower_priority": "from emotion_core.jobs.runner import lower_priority\nlower_priority()\n",
}


def _loop_count(seconds: float) -> int:
    """Iterations of the burst loop that take about `seconds` on this core right now."""
    n, t0 = 200_000, time.perf_counter()
    _burst(n)
    return int(n * seconds / (time.perf_counter() - t0))


def _burst(n: int) -> float:
    t0, x = time.perf_counter(), 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - t0


def _timed(n: int, bursts: int) -> list[float]:
    out = []
    for _ in range(bursts):
        time.sleep(0.2)
        out.append(_burst(n))
    return out


def _job(setup: str) -> list[subprocess.Popen]:
    """A job on every core, in a session of its own (one spinning process per core)."""
    return [subprocess.Popen([sys.executable, "-c", _SETUPS[setup] + _SPIN], start_new_session=True)
            for _ in range(os.cpu_count() or 1)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.job_priority",
                                description=__doc__.split("\n")[0])
    p.add_argument("--bursts", type=int, default=15)
    p.add_argument("--work", type=float, default=0.1, help="seconds of CPU work per burst (idle)")
    args = p.parse_args(argv)
    grouped = session_group() is not None
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, kernel autogroup: "
          f"{'on' if grouped else 'off'}")
    n = _loop_count(args.work)
    rows = {"no job": _timed(n, args.bursts)}
    for setup in _SETUPS:
        procs = _job(setup)
        try:
            time.sleep(1.0)
            rows[f"job, {setup}"] = _timed(n, args.bursts)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    idle = statistics.median(rows["no job"])
    print(f"{'setting':<26} {'median s':>9} {'p90 s':>7} {'x idle':>7}")
    for name, times in rows.items():
        med = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{name:<26} {med:9.3f} {p90:7.3f} {med / idle:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
