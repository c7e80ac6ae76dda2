/** The README's API example runs and prints what the README says it prints. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import ts from "typescript";
import { expect, it } from "vitest";
import { packageRoot } from "../src/tensor/package.js";

it("the first TypeScript example of the README prints what its comments say", () => {
  const root = packageRoot();
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(example).toBeDefined();
  // Every console.log(...) in the example is followed by a comment line with what it prints.
  const expected = [...example!.matchAll(/console\.log\([\s\S]*?\);[^\n]*\n\/\/ (.*)\n/g)].map(
    (m) => m[1],
  );
  expect(expected.length).toBeGreaterThanOrEqual(2);
  const entry = pathToFileURL(join(root, "dist", "src", "index.js")).href;
  const js = ts.transpileModule(example!.replace('"./src/index.js"', JSON.stringify(entry)), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  const dir = mkdtempSync(join(tmpdir(), "adjoint-readme-"));
  try {
    writeFileSync(join(dir, "example.mjs"), js);
    const out = execFileSync(process.execPath, [join(dir, "example.mjs")], { encoding: "utf8" });
    expect(out.trim().split("\n")).toEqual(expected);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
