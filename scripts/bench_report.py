#!/usr/bin/env python3
"""Turns the runs scripts/bench.sh recorded into the results table of BENCHMARKS.md.

Usage: bench_report.py OUT_DIR BASELINE WASM_FLOOR [--record BENCHMARKS.md]

Reads OUT_DIR/run.env (the machine and the parameters), OUT_DIR/runs.tsv (one line per
measured run) and OUT_DIR/fuel.tsv (the harness's fuel per request, when measured). Prints
the results as Markdown; with --record, also puts them between the results markers of the
given file.
"""

import statistics
import sys
from pathlib import Path

START = "<!-- bench-results:start -->"
END = "<!-- bench-results:end -->"
# Above this share of Envoy's core taken by other processes, throughput is not Envoy's.
NOISY = 0.10


def read_env(path):
    env = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return env


def read_runs(path, clk_tck):
    """Each run's figures, by round then configuration, and the configurations in run order.

    A line of runs.tsv: round, configuration, requests, duration (µs), latency p50 and p99
    (µs), then clock ticks during the load: Envoy's, the upstream's, Envoy's core busy and
    all, the load core busy and all.
    """
    rounds = {}
    order = []
    for line in path.read_text().splitlines():
        rnd, name, *numbers = line.split("\t")
        requests, duration_us, p50, p99, envoy, upstream, core_busy, core_all, load_busy, load_all = (
            int(n) for n in numbers
        )
        seconds = duration_us / 1e6
        rounds.setdefault(rnd, {})[name] = {
            "cpu_us": envoy / clk_tck * 1e6 / requests,
            "rps": requests / seconds,
            "busy": envoy / clk_tck / seconds,
            "others": max(core_busy - envoy, 0) / core_all,
            "load_core": load_busy / load_all,
            "upstream_us": upstream / clk_tck * 1e6 / requests,
            "p50_ms": p50 / 1000,
            "p99_ms": p99 / 1000,
        }
        if name not in order:
            order.append(name)
    return rounds, order


def read_fuel(path):
    fuel = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, per_request, host_calls = line.split("\t")
            fuel[name] = (int(per_request), int(host_calls))
    return fuel


def median_of(rounds, name, key):
    values = [r[name][key] for r in rounds.values() if name in r]
    return statistics.median(values), min(values), max(values)


def median_ratio(rounds, name, over, key):
    """The median over rounds of this run's figure divided by the same round's `over` run."""
    ratios = [r[name][key] / r[over][key] for r in rounds.values() if name in r and over in r]
    return statistics.median(ratios) if ratios else None


def ratio(value):
    return "–" if value is None else f"{value:.2f}"


def render(env, rounds, order, fuel, baseline, floor):
    lines = [
        f"Run {env['date']} at commit {env['commit']}: {env['cores']} cores ({env['cpu']}), "
        f"Envoy {env['envoy']}, {env['rounds']} rounds of {env['duration']} s "
        f"(after {env['warmup']} s warm-up) per configuration, {env['connections']} connections. "
        f"Load average {env['load_before']} before, {env.get('load_after', '?')} after.",
        "",
        f"| configuration | Envoy CPU µs/request (min–max) | × {baseline} | × {floor} "
        f"| requests/s | × {baseline} | Envoy core busy | fuel/request | host calls/request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        cpu, cpu_min, cpu_max = median_of(rounds, name, "cpu_us")
        rps, _, _ = median_of(rounds, name, "rps")
        busy, _, _ = median_of(rounds, name, "busy")
        fuel_per_request, host_calls = fuel.get(name, ("–", "–"))
        lines.append(
            f"| {name} | {cpu:.1f} ({cpu_min:.1f}–{cpu_max:.1f}) "
            f"| {ratio(median_ratio(rounds, name, baseline, 'cpu_us'))} "
            f"| {ratio(median_ratio(rounds, name, floor, 'cpu_us'))} "
            f"| {rps:.0f} | {ratio(median_ratio(rounds, name, baseline, 'rps'))} "
            f"| {busy:.0%} | {fuel_per_request} | {host_calls} |"
        )
    lines += [
        "",
        "| configuration | latency p50 ms | latency p99 ms | upstream CPU µs/request "
        "| Envoy's core used by other processes | load core busy |",
        "|---|---|---|---|---|---|",
    ]
    for name in order:
        p50, _, _ = median_of(rounds, name, "p50_ms")
        p99, _, _ = median_of(rounds, name, "p99_ms")
        upstream, _, _ = median_of(rounds, name, "upstream_us")
        others, _, _ = median_of(rounds, name, "others")
        load_core, _, _ = median_of(rounds, name, "load_core")
        lines.append(
            f"| {name} | {p50:.2f} | {p99:.2f} | {upstream:.1f} | {others:.0%} | {load_core:.0%} |"
        )
    others = max(median_of(rounds, name, "others")[0] for name in order)
    if others > NOISY:
        lines += [
            "",
            f"Other processes used up to {others:.0%} of Envoy's core during these runs, so "
            "Envoy could not saturate it: the throughput columns say little about the filters "
            "in this run; CPU time per request and its ratios still do, with more noise.",
        ]
    return "\n".join(lines) + "\n"


def record(path, results):
    text = path.read_text()
    before, start, rest = text.partition(START)
    _, end, after = rest.partition(END)
    if not start or not end:
        sys.exit(f"bench: {path} has no {START} ... {END} section to put the results in")
    path.write_text(f"{before}{START}\n{results}{END}{after}")


def main(argv):
    out, baseline, floor = Path(argv[1]), argv[2], argv[3]
    env = read_env(out / "run.env")
    rounds, order = read_runs(out / "runs.tsv", int(env["clk_tck"]))
    results = render(env, rounds, order, read_fuel(out / "fuel.tsv"), baseline, floor)
    print(results, end="")
    if len(argv) > 5 and argv[4] == "--record":
        record(Path(argv[5]), results)


if __name__ == "__main__":
    main(sys.argv)
