// Checks a Grafana dashboard JSON against the dashboard types of @grafana/schema (Grafana's
// own schema package), since Grafana itself cannot run here: the JSON is compiled by
// TypeScript as `<json> satisfies Dashboard`, which refuses a missing required field, a
// wrong type or enum value (a row's `type: "row"`, `collapsed`), and a field the types do
// not have. Run by tests/tests/monitoring_dashboard.rs.
//
//   node k8s/check/dashboard.mjs < k8s/monitoring/meshward-dashboard.json
//
// Writes a JSON array of problems, each "line <n>: <TypeScript's message>", the line being
// that of the dashboard JSON as read.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const json = readFileSync(0, "utf8");
JSON.parse(json); // refuse what is not JSON before TypeScript reads it as code
const here = dirname(fileURLToPath(import.meta.url));
// Never written to disk: the compiler host below serves it, from this directory so that
// @grafana/schema resolves from node_modules.
const file = join(here, "dashboard-check.ts");
const header = 'import type { Dashboard } from "@grafana/schema";\nexport const dashboard = ';
const source = `${header}${json.trimEnd()} satisfies Dashboard;\n`;

const options = {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  types: [],
};
const host = ts.createCompilerHost(options);
const getSourceFile = host.getSourceFile.bind(host);
host.getSourceFile = (name, language, ...rest) =>
  name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest);
const fileExists = host.fileExists.bind(host);
host.fileExists = (name) => name === file || fileExists(name);
const readFile = host.readFile.bind(host);
host.readFile = (name) => (name === file ? source : readFile(name));

const program = ts.createProgram([file], options, host);
const problems = ts.getPreEmitDiagnostics(program).map((diagnostic) => {
  const text = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n");
  if (!diagnostic.file || diagnostic.start === undefined) return text;
  const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
  // The JSON starts on the header's second line.
  return `line ${line}: ${text}`;
});
process.stdout.write(JSON.stringify(problems));
