// Checks manifests against the openAPIV3Schema of a CustomResourceDefinition, as the API
// server does with strict field validation: types, enums, patterns, lengths, required
// fields, and no field the schema does not list (except under
// x-kubernetes-preserve-unknown-fields). The CRD's CEL rules (x-kubernetes-validations)
// are not run here: tests/src/crd_rules.rs checks the ones our kinds have.
//
//   node k8s/check/crd.mjs <crd.yaml or crd.json> < manifests.json
//
// Reads a JSON array of manifests on stdin and writes a JSON array with one entry per
// manifest: its problems, each "<path>: <message>" (spec.wasm[0].code.type: must be one
// of HTTP, Image). The CRD file is JSON (tests convert the reference CRDs, which are not
// kept in this repository, from their YAML).
import { readFileSync } from "node:fs";
import Ajv from "ajv";

const crd = JSON.parse(readFileSync(process.argv[2], "utf8"));

function dotted(instancePath) {
  return instancePath
    .split("/")
    .filter((part) => part !== "")
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`))
    .join("")
    .replace(/^\./, "");
}

// The API server's reading of a structural schema, in JSON Schema terms: an object with
// listed properties takes no others, nullable adds null, int-or-string takes either.
function strict(schema) {
  if (Array.isArray(schema)) return schema.map(strict);
  if (schema === null || typeof schema !== "object") return schema;
  const out = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key.startsWith("x-kubernetes-") || key === "description" || key === "default") continue;
    if (key === "nullable" || key === "format") continue;
    out[key] = ["properties", "patternProperties"].includes(key)
      ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, strict(v)]))
      : strict(value);
  }
  if (schema.nullable === true && typeof out.type === "string") out.type = [out.type, "null"];
  if (schema["x-kubernetes-int-or-string"] === true) {
    delete out.type;
  }
  const keepsUnknown = schema["x-kubernetes-preserve-unknown-fields"] === true;
  if (schema.properties && !keepsUnknown && out.additionalProperties === undefined) {
    out.additionalProperties = false;
  }
  return out;
}

function describe(error) {
  const where = dotted(error.instancePath) || "(document)";
  switch (error.keyword) {
    case "enum":
      return `${where}: must be one of ${error.params.allowedValues.join(", ")}`;
    case "required":
      return `${where}: ${error.params.missingProperty} is required`;
    case "additionalProperties":
      return `${where ? `${where}.` : ""}${error.params.additionalProperty}: unknown field`.replace(
        /^\(document\)\./,
        "",
      );
    default:
      return `${where}: ${error.message}`;
  }
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validators = new Map();
for (const version of crd.spec.versions) {
  const schema = strict(version.schema.openAPIV3Schema);
  // metadata is ObjectMeta, which the API server checks itself.
  if (schema.properties) schema.properties.metadata = { type: "object" };
  schema.properties = { apiVersion: { type: "string" }, kind: { type: "string" }, ...schema.properties };
  validators.set(`${crd.spec.group}/${version.name}`, ajv.compile(schema));
}

const manifests = JSON.parse(readFileSync(0, "utf8"));
const results = manifests.map((manifest) => {
  if (manifest?.kind !== crd.spec.names.kind) {
    return [`(document): not a ${crd.spec.names.kind}`];
  }
  const validate = validators.get(manifest.apiVersion);
  if (!validate) return [`apiVersion: ${manifest.apiVersion} is not served by the CRD`];
  if (validate(manifest)) return [];
  // oneOf and anyOf report every branch; the branch errors say more than the summary.
  const problems = validate.errors.filter((e) => !["oneOf", "anyOf", "not"].includes(e.keyword));
  return [...new Set((problems.length ? problems : validate.errors).map(describe))];
});
process.stdout.write(JSON.stringify(results));
