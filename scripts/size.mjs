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
let total = 0;
console.log("| folder | code lines |\n|---|---:|");
for (const [folder, n] of [...counts].sort()) {
  console.log(`| ${folder} | ${n} |`);
  total += n;
}
console.log(`| total | ${total} |`);
