#!/usr/bin/env python3
"""Turns the runs scripts/bench.sh recorded into the results table of BENCHMARKS.md.

Usage: bench_report.py OUT_DIR BASELINE WASM_FLOOR [--record BENCHMARKS.md]

Reads OUT_DIR/run.env (the machine and the parameters), OUT_DIR/runs.tsv (one line per
measured run) and OUT_DIR/fuel.tsv (the harness's fuel, host calls by kind and VM entries
per request, when measured). Prints the results as Markdown, and, when the price list (the
cost-* rows) ran, the cost model: the price of each kind of host call and each filter's
predicted cost next to its measured one. With --record, also puts them between the results
(and cost-model) markers of the given file.
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
    """Per configuration: fuel, host calls, VM entries and host calls by kind, per request.

    A line of fuel.tsv: name, fuel, host calls, VM entries, then the kinds as
    `proxy_get_header_map_value=1,proxy_increment_metric=2` (or `-`).
    """
    fuel = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, per_request, host_calls, *rest = line.split("\t")
            entries = int(rest[0]) if rest else None
            kinds = {}
            if len(rest) > 1 and rest[1] != "-":
                for part in rest[1].split(","):
                    kind, _, count = part.partition("=")
                    kinds[kind] = float(count)
            fuel[name] = {
                "fuel": int(per_request),
                "host_calls": int(host_calls),
                "entries": entries,
                "kinds": kinds,
            }
    return fuel


# The cost model. A row of the price list (the cost-* configurations) makes calls of known
# kinds; each row prices the one kind no earlier row priced, from its median Envoy CPU time
# over cost-floor. A VM entry is priced from noop-wasm (every callback exported) over
# cost-floor (context create, request and response headers, delete), by their entries.
PRICE_FLOOR = "cost-floor"
ENTRY = "VM entry"
COST_ORDER = [
    "cost-get-header-value",
    "cost-get-pairs",
    "cost-get-property",
    "cost-get-shared-data",
    "cost-shared-data",
    "cost-increment-metric",
    "cost-record-metric",
    "cost-current-time",
    "cost-clear-route-cache",
    "cost-replace-value",
    "cost-add-value",
    "cost-remove-value",
    "cost-set-pairs",
]


def median_delta(rounds, name, over):
    """The median over rounds of this run's Envoy CPU µs/request less the same round's `over`."""
    deltas = [r[name]["cpu_us"] - r[over]["cpu_us"] for r in rounds.values() if name in r and over in r]
    return statistics.median(deltas) if deltas else None


def prices(rounds, fuel, floor):
    """µs per call of each kind (and per VM entry), from the cost rows that ran."""
    price = {}
    if PRICE_FLOOR not in fuel or not any(PRICE_FLOOR in r for r in rounds.values()):
        return price
    base = fuel[PRICE_FLOOR]
    top = fuel.get(floor)
    delta = median_delta(rounds, floor, PRICE_FLOOR)
    if top and delta is not None and top["entries"] and base["entries"] and top["entries"] > base["entries"]:
        price[ENTRY] = delta / (top["entries"] - base["entries"])
    for name in COST_ORDER:
        row = fuel.get(name)
        delta = median_delta(rounds, name, PRICE_FLOOR)
        if not row or delta is None:
            continue
        unknown = [k for k in row["kinds"] if k not in price]
        if len(unknown) != 1:
            continue
        known = sum(n * price[k] for k, n in row["kinds"].items() if k in price)
        price[unknown[0]] = (delta - known) / row["kinds"][unknown[0]]
    return price


def short(kind):
    return kind.removeprefix("proxy_")


def render_model(rounds, order, fuel, floor):
    """The price list and, per Wasm filter, its calls, the cost they predict and the measured cost."""
    price = prices(rounds, fuel, floor)
    if not price:
        return ""
    lines = [
        "| call | µs per call (Envoy CPU, median over rounds) |",
        "|---|---|",
    ]
    lines += [f"| {short(k)} | {v:.2f} |" for k, v in sorted(price.items())]
    lines += [
        "",
        f"| configuration | VM entries | host calls per request, by kind | predicted Δ µs over {floor} "
        "| measured Δ µs | measured − predicted (the filter's own work, and calls not priced) |",
        "|---|---|---|---|---|---|",
    ]
    base = fuel.get(floor)
    for name in order:
        row = fuel.get(name)
        if not row or name.startswith("cost-") or name == floor or not base or row["entries"] is None:
            continue
        predicted = (row["entries"] - base["entries"]) * price.get(ENTRY, 0.0)
        unpriced = []
        for kind, n in row["kinds"].items():
            if kind in price:
                predicted += n * price[kind]
            else:
                unpriced.append(short(kind))
        measured = median_delta(rounds, name, floor)
        calls = ", ".join(f"{short(k)}×{n:g}" for k, n in sorted(row["kinds"].items())) or "none"
        note = f" (not priced: {', '.join(unpriced)})" if unpriced else ""
        lines.append(
            f"| {name} | {row['entries']} | {calls} | {predicted:+.1f}{note} "
            f"| {'–' if measured is None else f'{measured:+.1f}'} "
            f"| {'–' if measured is None else f'{measured - predicted:+.1f}'} |"
        )
    return "\n".join(lines) + "\n"


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
        f"Run {env['date']} ({env.get('size', 'full')}) at commit {env['commit']}: {env['cores']} cores ({env['cpu']}), "
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
        row = fuel.get(name)
        fuel_per_request, host_calls = (row["fuel"], row["host_calls"]) if row else ("–", "–")
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


def record(path, results, start=START, end=END):
    text = path.read_text()
    before, found_start, rest = text.partition(start)
    _, found_end, after = rest.partition(end)
    if not found_start or not found_end:
        sys.exit(f"bench: {path} has no {start} ... {end} section to put the results in")
    path.write_text(f"{before}{start}\n{results}{end}{after}")


MODEL_START = "<!-- cost-model:start -->"
MODEL_END = "<!-- cost-model:end -->"


def main(argv):
    out, baseline, floor = Path(argv[1]), argv[2], argv[3]
    env = read_env(out / "run.env")
    rounds, order = read_runs(out / "runs.tsv", int(env["clk_tck"]))
    fuel = read_fuel(out / "fuel.tsv")
    results = render(env, rounds, order, fuel, baseline, floor)
    model = render_model(rounds, order, fuel, floor)
    print(results, end="")
    if model:
        print("\n" + model, end="")
    if len(argv) > 5 and argv[4] == "--record":
        record(Path(argv[5]), results)
        if model:
            record(Path(argv[5]), model, MODEL_START, MODEL_END)


if __name__ == "__main__":
    main(sys.argv)
