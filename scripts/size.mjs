// Line budget (tinygrad's sz.py): code lines (not blank, not comment-only) per folder of src/.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const counts = new Map();
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (/\.ts$/.test(name)) {
      const code = readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => {
          const t = line.trim();
          return t !== "" && !t.startsWith("//") && !t.startsWith("*") && !t.startsWith("/*");
        }).length;
      const folder = relative(root, dir);
      counts.set(folder, (counts.get(folder) ?? 0) + code);
    }
  }
}
for (const top of ["src", "workers", "asm"]) walk(join(root, top));
const check = process.argv.includes("--check");
let total = 0;
if (!check) console.log("| folder | code lines |\n|---|---:|");
for (const [folder, n] of [...counts].sort()) {
  if (!check) console.log(`| ${folder} | ${n} |`);
  total += n;
}
if (!check) console.log(`| total | ${total} |`);

// `--check`: fail when the core (src/tensor, src/graph, src/autodiff, src/runtime, their
// subfolders) or the backends (src/backends) exceed the budgets the README states ("Core line
// budget: N", "Backends line budget: N"); npm test runs it.
if (check) {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const budgets = [
    ["core", "Core line budget", /^src\/(tensor|graph|autodiff|runtime)(\/|$)/],
    ["backends", "Backends line budget", /^src\/backends(\/|$)/],
  ];
  const lines = [];
  for (const [name, phrase, folders] of budgets) {
    const n = [...counts]
      .filter(([folder]) => folders.test(folder))
      .reduce((sum, [, count]) => sum + count, 0);
    const match = new RegExp(`${phrase}: ([\\d,]+)`).exec(readme);
    if (!match) {
      console.error(`size: README.md states no "${phrase}: N"`);
      process.exit(1);
    }
    const budget = Number(match[1].replace(/,/g, ""));
    if (n > budget) {
      console.error(`size: the ${name} has ${n} code lines, over its budget of ${budget}`);
      process.exit(1);
    }
    lines.push(`${name}: ${n} code lines, budget ${budget}`);
  }
  console.log(lines.join("; "));
}
