"""What an open page costs the app's server while a training job runs, as after `make run`.

    python -m scripts.bench.server_load [--seconds 40] [--settle 25] [--page ""] [--no-job]

Starts the quick demo job in a fresh store (`--no-job`: none), the app's server as `make app`
does (`scripts.run_app`, byte code as under `make`), and one headless-Chromium session on
`--page` (Home by default), whose sidebar shows the job's panel: it redraws itself every 2 s
while the job runs, and Streamlit collects garbage after every such run. After `--settle`
seconds (the server's warm-up done) it asks the server's health check every 50 ms for
`--seconds` and prints the round trips (median, 99th percentile, worst, how many over 200 ms)
and the CPU seconds the server process used meanwhile. A round trip waits while any thread of
the server holds the interpreter lock, so the worst ones are the stalls a person's click or
photo would meet. The job trains at niceness 10 on the same cores: compare settings in one run,
interleaved, not against numbers from another day.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass

from scripts.bench import appserver

PROBE_EVERY_S = 0.05
STALL_MS = 200.0


@dataclass
class Load:
    round_trips_ms: list[float]
    server_cpu_s: float
    job_shown: bool  # the sidebar showed the running job's panel (else nothing polled)

    def summary(self) -> str:
        ms = sorted(self.round_trips_ms)
        return (f"{len(ms)} health checks: median {statistics.median(ms):.1f} ms, p99 "
                f"{ms[int(0.99 * (len(ms) - 1))]:.0f} ms, worst {ms[-1]:.0f} ms, "
                f"{sum(x > STALL_MS for x in ms)} over {STALL_MS:.0f} ms; server CPU "
                f"{self.server_cpu_s:.1f} s" + ("" if self.job_shown else
                                                 "; the job panel was not on screen"))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(seconds: float, settle: float, page_path: str = "", job: bool = True) -> Load:
    from playwright.sync_api import sync_playwright

    env = appserver.store_env("server_load_")
    if job:
        appserver.demo_job(env, "start")
    port = appserver.free_port()
    proc = subprocess.Popen(appserver.command(port), cwd=appserver.REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        appserver.wait_healthy(url, proc, timeout=120)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(appserver.CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/{page_path}")
            page.wait_for_timeout(settle * 1000)
            cpu0, trips = _cpu_seconds(proc.pid), []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.perf_counter()
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=30) as r:
                    r.read()
                trips.append((time.perf_counter() - t0) * 1000.0)
                page.wait_for_timeout(PROBE_EVERY_S * 1000)
            cpu = _cpu_seconds(proc.pid) - cpu0
            shown = "Cancel job" in page.locator('[data-testid="stSidebar"]').inner_text()
            browser.close()
    finally:
        appserver.stop(proc, env, job)
    return Load(trips, cpu, shown)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="how long to probe")
    ap.add_argument("--settle", type=float, default=25.0,
                    help="seconds between opening the page and probing (the warm-up finishes)")
    ap.add_argument("--page", default="", help="the page's URL path, e.g. predict; Home if empty")
    ap.add_argument("--no-job", dest="job", action="store_false",
                    help="no training job: the idle server's cost")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.settle < 0:
        ap.error("--seconds must be positive and --settle at least 0")
    load = measure(args.seconds, args.settle, args.page, args.job)
    print(f"server load, page /{args.page}, {'the quick demo job training' if args.job else 'no job'},"
          f" {args.seconds:g} s after {args.settle:g} s: {load.summary()}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
