/** examples/: each runs as its header says, with the build, and prints what a user should see. */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";
import { packageRoot } from "../src/package.js";

it("two-layer-tanh.mjs: the error falls below 0.02 on every core, the same bits on 1 thread", () => {
  const out = execFileSync(
    process.execPath,
    [join(packageRoot(), "examples", "two-layer-tanh.mjs")],
    {
      encoding: "utf8",
    },
  );
  const errors = [...out.matchAll(/mean squared error ([\d.]+)/g)].map((m) => Number(m[1]));
  expect(errors).toHaveLength(4);
  errors.slice(1).forEach((e, i) => expect(e).toBeLessThan(errors[i]));
  expect(errors[3]).toBeLessThan(0.02);
  expect(out).toContain("same parameters on 1 thread: true");
});
