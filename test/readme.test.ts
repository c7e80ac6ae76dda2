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
  (index, code) => {
    // Every console.log(...) is followed by a comment line with what it prints.
    const expected = [...code.matchAll(/console\.log\([\s\S]*?\);[^\n]*\n\/\/ (.*)\n/g)].map(
      (m) => m[1],
    );
    expect(expected.length).toBeGreaterThanOrEqual(1);
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
      expect(out.trim().split("\n")).toEqual(expected);
    } finally {
      rmSync(file, { force: true });
    }
  },
);
