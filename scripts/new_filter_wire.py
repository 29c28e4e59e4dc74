#!/usr/bin/env python3
"""Wires a filter that scripts/new-filter.sh just generated into the files that list every
filter and that need an edit rather than a new file:

- k8s/envoy-gateway/base/meshward.yaml: the EnvoyExtensionPolicy's `wasm` list runs the
  filters in the order of Istio's chain (tests/tests/envoy_gateway.rs checks it), so the
  new entry goes where its WasmPlugin's phase, priority and name put it;
- k8s/envoy-gateway/http/kustomization.yaml: its patches address the list by index, so
  they are written again from the list, each behind a `test` of the entry's name (a list
  that moved fails to render instead of fetching one module for another);
- k8s/envoy-gateway/native/kustomization.yaml: the same list as dynamic modules, with the
  same configurations, gets the new filter at the same place;
- k8s/monitoring/meshward-dashboard.json: a row for the filter with a first panel, before
  the row of Envoy's Wasm runtime;
- README.md ("Alerts and dashboard"): the line that describes the new panel
  (tests/tests/monitoring_dashboard.rs checks that every panel has one).

Usage: new_filter_wire.py <repository> <name> <entry.yaml> <panel.json>, the last two
being templates/filter's envoy-gateway-entry.yaml and dashboard-panel.json with the names
filled in. Standard library only: it runs before `make setup` has made anything.
"""

import hashlib
import json
import re
import sys
from pathlib import Path

PHASES = {"AUTHN": 0, "AUTHZ": 1, "STATS": 2}
RUNTIME_ROW = "Wasm runtime (Envoy)"
RUNTIME_README = "*Wasm runtime (Envoy)*"


def fail(message):
    print(f"new-filter: {message}", file=sys.stderr)
    sys.exit(1)


def istio_order_key(text):
    """The key istiod orders a WasmPlugin by (tests/src/istiod.rs's chain_order): phase,
    priority (highest first), namespace, name. Our manifests are simple enough to read
    with patterns; a file that is not an ingress gateway WasmPlugin gives None."""
    if not re.search(r"^kind: WasmPlugin$", text, re.M):
        return None
    if not re.search(r"^      istio: ingressgateway$", text, re.M):
        return None
    metadata = re.search(r"^metadata:\n((?:  .*\n)+)", text, re.M)
    if not metadata:
        return None
    name = re.search(r"^  name: (\S+)$", metadata.group(1), re.M)
    namespace = re.search(r"^  namespace: (\S+)$", metadata.group(1), re.M)
    phase = re.search(r"^  phase: (\S+)$", text, re.M)
    priority = re.search(r"^  priority: (-?\d+)$", text, re.M)
    url = re.search(r"^  url: (\S+)$", text, re.M)
    if not (name and url):
        return None
    module = url.group(1).rsplit("/", 1)[-1].split("@")[0].split(":")[0]
    module = module.removesuffix(".wasm")
    key = (
        PHASES.get(phase.group(1) if phase else "", 3),
        -int(priority.group(1)) if priority else 0,
        namespace.group(1) if namespace else "",
        name.group(1),
    )
    return module, key


def base_order(root):
    """Each ingress gateway module of k8s/base with its order key."""
    kustomization = (root / "k8s/base/kustomization.yaml").read_text()
    keys = {}
    for resource in re.findall(r"^- (\S+\.yaml)$", kustomization, re.M):
        found = istio_order_key((root / "k8s/base" / resource).read_text())
        if found:
            keys[found[0]] = found[1]
    return keys


def add_policy_entry(root, name, entry):
    path = root / "k8s/envoy-gateway/base/meshward.yaml"
    lines = path.read_text().splitlines(keepends=True)
    keys = base_order(root)
    if name not in keys:
        fail(f"k8s/base has no ingress gateway WasmPlugin for {name}")
    starts = [i for i, line in enumerate(lines) if re.match(r"^  - name: \S+$", line)]
    if any(lines[i].split()[-1] == name for i in starts):
        fail(f"{path.relative_to(root)} already runs {name}")
    at = len(lines)
    for i in starts:
        other = lines[i].split()[-1]
        if other in keys and keys[other] > keys[name]:
            # The comment lines just above an entry belong to it.
            while i > 0 and lines[i - 1].startswith("  #"):
                i -= 1
            at = i
            break
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines[at:at] = [entry if entry.endswith("\n") else entry + "\n"]
    path.write_text("".join(lines))
    return [
        re.match(r"^  - name: (\S+)$", line).group(1)
        for line in "".join(lines).splitlines()
        if re.match(r"^  - name: \S+$", line)
    ]


HTTP_OP = """\
    - op: test
      path: /spec/wasm/{index}/name
      value: {name}
    - op: replace
      path: /spec/wasm/{index}/code
      value:
        type: HTTP
        http:
          url: {url}
          sha256: {sha}
"""


def rewrite_http_patches(root, names):
    path = root / "k8s/envoy-gateway/http/kustomization.yaml"
    text = path.read_text()
    head, marker, _ = text.partition("patches:\n")
    if not marker:
        fail(f"{path.relative_to(root)} has no patches:")
    known = {}
    for url, sha in re.findall(r"url: (\S+)\n\s+sha256: (\S+)", text):
        known[url.rsplit("/", 1)[-1].removesuffix(".wasm")] = (url, sha)
    patch = ""
    for index, name in enumerate(names):
        url, sha = known.get(
            name,
            (
                f"https://downloads.example.com/meshward/0.1.0/{name}.wasm",
                hashlib.sha256(f"meshward http placeholder {name}".encode()).hexdigest(),
            ),
        )
        patch += HTTP_OP.format(index=index, name=name, url=url, sha=sha)
    path.write_text(
        head
        + marker
        + "- target:\n"
        + "    group: gateway.envoyproxy.io\n"
        + "    kind: EnvoyExtensionPolicy\n"
        + "    name: meshward\n"
        + "  patch: |-\n"
        + patch.rstrip("\n")
        + "\n"
    )


NATIVE_ENTRY = """\
      - name: meshward-{name}
        filterName: {name}
        config:
{config}
"""


def add_native_entry(root, name, names, entry):
    """k8s/envoy-gateway/native runs the same list as dynamic modules, with the same
    configurations (tests/tests/envoy_gateway_native.rs): the new filter's goes in at the
    same place, with the config of its Wasm entry."""
    path = root / "k8s/envoy-gateway/native/kustomization.yaml"
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if re.match(r"^      - name: meshward-\S+$", line)]
    config = entry.split("    config:\n", 1)[1] if "    config:\n" in entry else ""
    config = "".join("    " + line + "\n" for line in config.rstrip("\n").splitlines())
    block = NATIVE_ENTRY.format(name=name, config=config.rstrip("\n"))
    index = names.index(name)
    at = starts[index] if index < len(starts) else len(lines)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines[at:at] = [block]
    path.write_text("".join(lines))


def add_dashboard_row(root, name, panel):
    path = root / "k8s/monitoring/meshward-dashboard.json"
    dashboard = json.loads(path.read_text())
    panels = dashboard.get("panels", [])
    at = next(
        (i for i, p in enumerate(panels) if p.get("type") == "row" and p.get("title") == RUNTIME_ROW),
        len(panels),
    )
    y = panels[at]["gridPos"]["y"] if at < len(panels) else max(
        (p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=0
    )
    next_id = max((p.get("id", 0) for p in panels), default=0) + 1
    row = {
        "type": "row",
        "title": name,
        "collapsed": False,
        "id": next_id,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "panels": [],
    }
    panel["id"] = next_id + 1
    panel["gridPos"] = {"h": 8, "w": 12, "x": 0, "y": y + 1}
    for later in panels[at:]:
        later["gridPos"]["y"] += 9
    panels[at:at] = [row, panel]
    path.write_text(json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n")


def add_readme_line(root, name, panel):
    path = root / "README.md"
    text = path.read_text()
    section = f"*{name}*\n\n- **{panel['title']}**: {panel['description']}\n\n"
    if RUNTIME_README not in text:
        fail(f"README.md has no {RUNTIME_README} in its list of panels")
    path.write_text(text.replace(RUNTIME_README, section + RUNTIME_README, 1))


def main():
    if len(sys.argv) != 5:
        fail("usage: new_filter_wire.py <repository> <name> <entry.yaml> <panel.json>")
    root, name = Path(sys.argv[1]), sys.argv[2]
    entry = Path(sys.argv[3]).read_text()
    panel = json.loads(Path(sys.argv[4]).read_text())
    names = add_policy_entry(root, name, entry)
    rewrite_http_patches(root, names)
    add_native_entry(root, name, names, entry)
    add_dashboard_row(root, name, panel)
    add_readme_line(root, name, panel)


if __name__ == "__main__":
    main()
