// Checks Istio manifests against the schemas of @kubernetes-models/istio, a maintained
// package generated from Istio's CRDs: types, enums, patterns, lengths and required
// fields. It does not check unknown fields or the CRDs' CEL rules (x-kubernetes-validations);
// tests/src/wasmplugin.rs does.
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

async function check(manifest) {
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
