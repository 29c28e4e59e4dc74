// Checks Istio manifests against the schemas of @kubernetes-models/istio, a maintained
// package generated from Istio's CRDs: types, enums, patterns, lengths and required
// fields (and k8s/monitoring's PrometheusRule against @kubernetes-models/prometheus-operator). It does not check unknown fields or the CRDs' CEL rules (x-kubernetes-validations);
// tests/src/istio_schema.rs does.
//
// The package has no model for TrafficExtension (Istio 1.30): its `spec.wasm` holds the
// fields of a WasmPlugin's spec, with the same types, enums and patterns, so a
// TrafficExtension is checked as the WasmPlugin it was made from and the problems name
// its own paths (spec.wasm.failStrategy); tests/src/traffic_extension.rs checks the rest.
//
// Reads a JSON array of manifests on stdin and writes a JSON array with one entry per
// manifest: the list of problems found, each "<path>: <message>" with the path in
// dotted form (spec.failStrategy). A kind the package has no model for is a problem too.
//
//   kubectl kustomize k8s/base | ... | node k8s/check/validate.mjs
import { readFileSync } from "node:fs";

// The API groups whose models the package holds, by group/version.
const GROUPS = {
  "extensions.istio.io/v1alpha1": "@kubernetes-models/istio/extensions.istio.io/v1alpha1",
  "networking.istio.io/v1": "@kubernetes-models/istio/networking.istio.io/v1",
  "networking.istio.io/v1beta1": "@kubernetes-models/istio/networking.istio.io/v1beta1",
  "networking.istio.io/v1alpha3": "@kubernetes-models/istio/networking.istio.io/v1alpha3",
  // The HTTPRoutes beside k8s/envoy-gateway's policy, from the Gateway API models.
  "gateway.networking.k8s.io/v1": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1",
  // The alerts' PrometheusRule (k8s/monitoring/), from the prometheus-operator models.
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};

function dotted(instancePath) {
  return instancePath
    .split("/")
    .filter((part) => part !== "")
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`))
    .join("")
    .replace(/^\./, "");
}

function describe(error) {
  const where = dotted(error.instancePath) || "(document)";
  switch (error.keyword) {
    case "enum":
      return `${where}: must be one of ${error.params.allowedValues.join(", ")}`;
    case "required":
      return `${where}: ${error.params.missingProperty} is required`;
    default:
      return `${where}: ${error.message}`;
  }
}

// The fields a TrafficExtension keeps under spec.wasm, which a WasmPlugin has in spec.
const WASM_FIELDS = [
  "url", "sha256", "pluginName", "pluginConfig", "failStrategy", "imagePullPolicy",
  "imagePullSecret", "type", "vmConfig", "verificationKey",
];

async function checkTrafficExtension(manifest) {
  const { wasm, lua, ...rest } = manifest.spec ?? {};
  if (wasm === undefined || wasm === null || typeof wasm !== "object") return [];
  const spec = { ...rest, ...wasm };
  // TrafficExtension's "no phase" is UNSPECIFIED, WasmPlugin's UNSPECIFIED_PHASE.
  if (spec.phase === "UNSPECIFIED") spec.phase = "UNSPECIFIED_PHASE";
  const plugin = { ...manifest, kind: "WasmPlugin", spec };
  const problems = await check(plugin);
  return problems.map((problem) => {
    const field = /^spec\.([A-Za-z0-9]+)/.exec(problem)?.[1];
    return WASM_FIELDS.includes(field) ? problem.replace(/^spec\./, "spec.wasm.") : problem;
  });
}

async function check(manifest) {
  if (manifest?.apiVersion === "extensions.istio.io/v1alpha1" && manifest?.kind === "TrafficExtension") {
    return checkTrafficExtension(manifest);
  }
  const module = GROUPS[manifest?.apiVersion];
  const models = module ? await import(module) : {};
  const Model = models[manifest?.kind];
  if (typeof Model !== "function") {
    return [`(document): no schema for ${manifest?.apiVersion} ${manifest?.kind}`];
  }
  try {
    new Model(manifest).validate();
    return [];
  } catch (error) {
    if (!Array.isArray(error.errors)) throw error;
    return error.errors.map(describe);
  }
}

const manifests = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const manifest of manifests) results.push(await check(manifest));
process.stdout.write(JSON.stringify(results));
