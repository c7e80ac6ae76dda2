// `npm run build`: rebuilds only what is out of date. Each WASM kernels build runs when asm/ has
// a file newer than its output (or the output is missing); tsc runs incrementally (its state in
// dist/.tsbuildinfo), so a build with nothing changed takes a second or two.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync, utimesSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
for (const tool of ["typescript/bin/tsc", "assemblyscript/bin/asc.js"]) {
  if (!existsSync(join(root, "node_modules", tool))) {
    // An unbuilt checkout installed by path (npm install ../adjoint --install-links) has no
    // devDependencies: say what to do instead of a module-not-found stack.
    console.error(
      `adjoint: building needs its devDependencies (${tool.split("/")[0]} is missing in ${root}node_modules): run \`npm install\` in ${root} first, or install adjoint from \`npm pack\`'s tarball`,
    );
    process.exit(1);
  }
}
const run = (script, args) =>
  execFileSync(process.execPath, [join(root, "node_modules", script), ...args], {
    cwd: root,
    stdio: "inherit",
  });

const newestSource = Math.max(
  ...readdirSync(join(root, "asm")).map((f) => statSync(join(root, "asm", f)).mtimeMs),
);
const targets = [
  ["asm/asconfig.json", "shared", "build/kernels-shared.wasm"],
  ["asm/asconfig.json", "relaxed", "build/kernels-relaxed.wasm"],
  ["asm/train.asconfig.json", "train", "build/train.wasm"],
];
for (const [config, target, output] of targets) {
  const path = join(root, output);
  if (existsSync(path) && statSync(path).mtimeMs >= newestSource) continue;
  run("assemblyscript/bin/asc.js", ["--config", config, "--target", target]);
}
// Folder mtimes count too: a deleted or renamed file changes its folder's.
function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((f) => newest(join(path, f))));
}
const inputs = [
  "src",
  "workers",
  "test",
  "bench",
  "vitest.config.ts",
  "tsconfig.json",
  "package.json",
];
const info = join(root, "dist", ".tsbuildinfo");
const stale =
  !existsSync(info) ||
  Math.max(...inputs.map((p) => newest(join(root, p)))) > statSync(info).mtimeMs;
if (stale) {
  run("typescript/bin/tsc", [
    "-p",
    "tsconfig.json",
    "--incremental",
    "--tsBuildInfoFile",
    "dist/.tsbuildinfo",
  ]);
  // tsc leaves its state file alone when nothing it emits changed: mark this check as done.
  const now = new Date();
  utimesSync(info, now, now);
}
