/**
 * The README's examples run as written: every TypeScript block that imports from "adjoint" is
 * transpiled and run inside the package (so "adjoint" resolves to its own build, as it would in
 * a user's project), and every console.log prints what the comment line under it says.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { expect, it } from "vitest";
import { packageRoot } from "../src/package.js";

const root = packageRoot();
const readme = readFileSync(join(root, "README.md"), "utf8");
const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)]
  .map((m) => m[1])
  .filter((code) => /from "adjoint";/.test(code));

it("the README has its examples: the graph API, fit(), the Python exercise's cases", () => {
  expect(examples.length).toBeGreaterThanOrEqual(3);
});

it.each(examples.map((code, i) => [i + 1, code] as const))(
  "example %i prints what its comments say",
  (index, written) => {
    let code = written;
    // Every console.log(...) is followed by a comment line with what it prints.
    const expected = [...code.matchAll(/console\.log\([\s\S]*?\);[^\n]*\n\/\/ (.*)\n/g)].map(
      (m) => m[1],
    );
    expect(expected.length).toBeGreaterThanOrEqual(1);
    // The models' examples train for minutes: by default they run 40 steps, and every number in
    // what they print may differ; ADJOINT_README_FULL=1 runs them as written, values and all.
    const long = /fit\(\{/.test(code) && /loadMnistFull\(\)/.test(code);
    const full = !long || process.env.ADJOINT_README_FULL === "1";
    if (!full) {
      expect(code).toMatch(/\n {2}batchSize: \d+,\n/);
      code = code.replace(/\n {2}batchSize: (\d+),\n/, "\n  batchSize: $1,\n  steps: 40,\n");
    }
    const js = ts.transpileModule(code, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    // Inside the package: its package.json's "exports" resolves the self-import "adjoint".
    const dir = join(root, "dist", "readme-examples");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `example-${index}-${process.pid}.mjs`);
    writeFileSync(file, js);
    try {
      const out = execFileSync(process.execPath, [file], { encoding: "utf8" });
      const lines = out.trim().split("\n");
      if (full) expect(lines).toEqual(expected);
      else {
        const shape = (line: string) => line.replace(/\d+(\.\d+)?/g, "N");
        expect(lines.map(shape)).toEqual(expected.map(shape));
      }
    } finally {
      rmSync(file, { force: true });
    }
  },
);
