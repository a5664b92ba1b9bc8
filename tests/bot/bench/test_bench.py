"""`supportbot bench`: a short smoke run that asserts correctness only (timings live in the JSON,
never in a test), and the arithmetic of its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.bench.runner import compare, histogram_quantiles, percentiles


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "SLACK", "DATABASE"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", "bench", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )


def test_smoke_run_is_correct(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = bench(tmp_path, "--threads", "6", "--channels", "3", "--rate", "50", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    check = result["correctness"]
    assert check["ok"] is True and check["completed"] == 6 and check["duplicate_replies"] == 0
    # every message and every Confirm click is one work item of the queue
    assert check["inbox_done"] == check["messages_sent"] + check["refunds_confirmed_by_customers"] > 6
    assert {
        "ack_ms",
        "turn_ms",
        "overhead_ms",
        "turns_per_s",
        "peak_rss_mb",
        "slack_429s",
        "tokens",
        "correctness",
    } <= set(result)
    assert set(result["tokens"]) == {"input", "cache_read", "cache_write", "output"}
    assert "| 6 |" in proc.stdout  # the Markdown table
    cost = result["per_turn"]  # the replica's own counters, the warm-up not counted
    assert cost["cpu_ms"] > 0 and cost["statements"] > 0 and cost["write_tx"] > 0 and cost["read_tx"] > 0


def test_the_web_suite_reports_each_level_of_concurrent_chats(tmp_path: Path) -> None:
    out = tmp_path / "web.json"
    proc = bench(tmp_path, "--suite", "web", "--chats", "1,3", "--turns", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    levels = json.loads(out.read_text())["levels"]
    assert [(lv["chats"], lv["turns"]) for lv in levels] == [(1, 2), (3, 6)]
    assert all(lv["cpu_ms_per_chat"] > 0 and lv["statements_per_chat"] > 0 for lv in levels)
    assert "| 3 | 6 |" in proc.stdout


def test_bad_bench_flags_are_one_line_errors(tmp_path: Path) -> None:
    for args, says in (
        (["--channel-layout", "rows"], "--channel-layout must be per-customer or shared:N"),
        (["--suite", "web", "--chats", "1,x"], "--chats must be numbers"),
    ):
        proc = bench(tmp_path, *args)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_several_replicas_need_postgresql(tmp_path: Path) -> None:
    proc = bench(tmp_path, "--threads", "2", "--replicas", "2")
    assert proc.returncode == 2 and "needs PostgreSQL" in proc.stderr and "Traceback" not in proc.stderr


def test_percentiles_and_histogram_quantiles() -> None:
    assert percentiles([float(v) for v in range(1, 101)]) == {"p50": 51.0, "p95": 96.0, "p99": 100.0, "max": 100.0}
    exposition = (
        "# TYPE supportbot_turn_overhead_seconds histogram\n"
        'supportbot_turn_overhead_seconds_bucket{le="0.01"} 50.0\n'
        'supportbot_turn_overhead_seconds_bucket{le="0.02"} 100.0\n'
        'supportbot_turn_overhead_seconds_bucket{le="+Inf"} 100.0\n'
        "supportbot_turn_overhead_seconds_count 100.0\nsupportbot_turn_overhead_seconds_sum 1.0\n"
    )
    q = histogram_quantiles([exposition, exposition], "supportbot_turn_overhead_seconds")  # two replicas
    assert q["p50"] == 10.0 and q["p95"] == 19.0 and q["max"] == 20.0


def test_compare_prints_ratios() -> None:
    old = {k: {"p50": 10.0, "p95": 20.0, "p99": 40.0} for k in ("ack_ms", "turn_ms", "overhead_ms")}
    new = {k: {"p50": 5.0, "p95": 20.0, "p99": 80.0} for k in ("ack_ms", "turn_ms", "overhead_ms")}
    table = compare(new | {"turns_per_s": 4.0, "peak_rss_mb": 100.0}, old | {"turns_per_s": 2.0, "peak_rss_mb": 100.0})
    assert "| turn_ms p50 | 10.0 | 5.0 | 0.50 |" in table and "| turns_per_s | 2.0 | 4.0 | 2.00 |" in table
