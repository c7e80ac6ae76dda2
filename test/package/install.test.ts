/**
 * adjoint as a package: `npm pack`, installed into a new project with production dependencies
 * only, imports with the wasm backend active, differentiates a graph, trains a user-built graph
 * with fit() on 2 threads, and runs its CLI through `npx adjoint-train`.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { packageRoot } from "../../src/package.js";

const tmp = mkdtempSync(join(tmpdir(), "adjoint-package-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const SCRIPT = `
import { variable, gradients, Evaluator, tensor, backend, fit, matmul, mean } from "adjoint";
const x = variable("x");
const y = x.mul(x).add(x);
const [dx] = gradients(y, [x]);
const [g] = new Evaluator([dx]).run(new Map([[x, tensor([1, 2])]]));
const X = variable("X", { shape: [null, 3], dtype: "float32" });
const T = variable("T", { shape: [null, 1], dtype: "float32" });
const W = variable("W", { shape: [3, 1], dtype: "float32" });
const err = matmul(X, W).sub(T);
const rows = 128;
const xs = tensor(Float32Array.from({ length: rows * 3 }, (_, i) => (Math.sin(i * 12.9898) * 43758.5453) % 1), { shape: [rows, 3] });
const ts = tensor(Float32Array.from({ length: rows }, (_, r) => xs.data[3 * r] - 2 * xs.data[3 * r + 2]), { shape: [rows, 1] });
const options = { loss: mean(err.mul(err)), params: new Map([[W, tensor(new Float32Array(3), { shape: [3, 1] })]]),
  data: new Map([[X, xs], [T, ts]]), batchSize: 64, epochs: 30, optimizer: { kind: "sgd", lr: 0.3 } };
const two = await fit({ ...options, threads: 2 });
const one = await fit({ ...options, threads: 1 });
console.log(JSON.stringify({ backend: backend().name, grad: g.toArray(), threads: two.threads,
  same: two.paramsHash === one.paramsHash, w: [...two.params.get(W).data] }));
`;

it("packs, installs with production dependencies only, imports, differentiates and fits", () => {
  const root = packageRoot();
  const npm = (args: string[], cwd: string) =>
    execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], {
      cwd,
      encoding: "utf8",
      env: { ...process.env, npm_config_prefer_offline: "true" },
    });
  npm(["pack", "--pack-destination", tmp], root);
  const tarball = readdirSync(tmp).find((f) => f.endsWith(".tgz"))!;
  expect(tarball).toMatch(/^adjoint-\d+\.\d+\.\d+\.tgz$/);
  const project = join(tmp, "user-project");
  execFileSync("mkdir", [project]);
  writeFileSync(join(project, "package.json"), JSON.stringify({ type: "module", private: true }));
  npm(["install", join(tmp, tarball), "--omit=dev"], project);
  const installed = join(project, "node_modules");
  expect(existsSync(join(installed, "adjoint", "dist", "src", "index.js"))).toBe(true);
  expect(existsSync(join(installed, "adjoint", "build", "kernels-relaxed.wasm"))).toBe(true);
  // No devDependency came along: nothing to build at run time.
  for (const dev of ["typescript", "assemblyscript", "vitest"]) {
    expect(existsSync(join(installed, dev)), dev).toBe(false);
  }
  writeFileSync(join(project, "main.mjs"), SCRIPT);
  const out = JSON.parse(
    execFileSync(process.execPath, ["main.mjs"], { cwd: project, encoding: "utf8" }),
  );
  expect(out.backend).not.toBe("js");
  expect(out.grad).toEqual([3, 5]); // d/dx (x^2 + x) = 2x + 1
  expect(out.threads).toBe(2);
  expect(out.same).toBe(true);
  // Least squares of t = x0 - 2 x2: the fitted weights approach [1, 0, -2].
  expect(out.w[0]).toBeCloseTo(1, 1);
  expect(out.w[2]).toBeCloseTo(-2, 1);
  // CommonJS: require() of the ES module, which Node 20.19+ and 22.12+ do without a flag.
  writeFileSync(
    join(project, "main.cjs"),
    'const { variable, gradients, Evaluator, tensor } = require("adjoint");\n' +
      'const x = variable("x"); const [g] = gradients(x.mul(x), [x]);\n' +
      "console.log(JSON.stringify(new Evaluator([g]).run({ x: tensor([1.5]) })[0].toArray()));\n",
  );
  const cjs = execFileSync(process.execPath, ["main.cjs"], { cwd: project, encoding: "utf8" });
  expect(JSON.parse(cjs.trim().split("\n").at(-1)!)).toEqual([3]);
  // TypeScript users: the package's declarations type-check under strict settings without
  // skipLibCheck (the fluent methods' augmentation included; no internal type of a dependency,
  // such as onnx-proto's, reaches them).
  writeFileSync(
    join(project, "main.ts"),
    'import { variable, gradients, matmul, exportOnnx, type Node } from "adjoint";\n' +
      'const x: Node = variable("x");\n' +
      "const [g]: Node[] = gradients(x.mul(x).add(1).matmul(x), [x]);\n" +
      "const bytes: Uint8Array = exportOnnx([matmul(x, g)], { inputs: [] });\n" +
      "console.log(bytes.length);\n",
  );
  writeFileSync(
    join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        typeRoots: [join(root, "node_modules", "@types")],
        types: ["node"],
      },
      files: ["main.ts"],
    }),
  );
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  expect(() =>
    execFileSync(process.execPath, [tsc, "-p", project], { encoding: "utf8" }),
  ).not.toThrow();
  const help = execFileSync("npx", ["--no-install", "adjoint-train", "--help"], {
    cwd: project,
    encoding: "utf8",
  });
  expect(help).toMatch(/^Usage: /);
});
