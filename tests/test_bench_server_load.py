"""scripts/bench/server_load: its summary of the health-check round trips, the server's CPU
clock it reads, and its user errors (the measurement itself needs Chromium and minutes)."""
from __future__ import annotations

import os

import pytest

from scripts.bench import server_load


def test_summary_counts_the_stalls_and_says_when_nothing_polled() -> None:
    load = server_load.Load([3.0, 2.0, 250.0, 4.0, 640.0], server_cpu_s=1.31, job_shown=True)
    text = load.summary()
    assert "5 health checks" in text and "median 4.0 ms" in text and "worst 640 ms" in text
    assert "2 over 200 ms" in text and "server CPU 1.3 s" in text
    assert "not on screen" not in text
    assert "the job panel was not on screen" in server_load.Load([1.0], 0.0, False).summary()


def test_cpu_seconds_reads_a_process_clock_that_advances() -> None:
    before = server_load._cpu_seconds(os.getpid())
    sum(i * i for i in range(3_000_000))  # some CPU work in this process
    assert server_load._cpu_seconds(os.getpid()) > before >= 0


@pytest.mark.parametrize("argv", [["--seconds", "0"], ["--settle", "-1"]])
def test_bad_durations_are_refused(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        server_load.main(argv)
    assert exc.value.code == 2 and "--seconds must be positive" in capsys.readouterr().err
