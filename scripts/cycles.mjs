// Import cycles among the modules of src/ and workers/ (value imports; `import type` is erased):
// prints each cycle and exits 1 when there is one. npm test runs it.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const files = [];
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith(".ts")) files.push(path);
  }
}
for (const top of ["src", "workers"]) walk(join(root, top));

// import ... from "./x.js" / export ... from "./x.js" / import "./x.js"; not `import type`.
const IMPORT = /^\s*(?:import|export)\s+(?!type\s)(?:[^'"]*?\s+from\s+)?["'](\.[^"']+)["']/gm;
const edges = new Map();
for (const file of files) {
  const text = readFileSync(file, "utf8");
  const targets = [];
  for (const [, spec] of text.matchAll(IMPORT)) {
    targets.push(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
  }
  edges.set(
    file,
    targets.filter((t) => files.includes(t)),
  );
}

// Tarjan's strongly connected components: a component of two or more modules is a cycle.
let index = 0;
const stack = [];
const info = new Map();
const cycles = [];
function visit(v) {
  info.set(v, { index, low: index, onStack: true });
  index++;
  stack.push(v);
  for (const w of edges.get(v)) {
    if (!info.has(w)) {
      visit(w);
      info.get(v).low = Math.min(info.get(v).low, info.get(w).low);
    } else if (info.get(w).onStack) {
      info.get(v).low = Math.min(info.get(v).low, info.get(w).index);
    }
  }
  if (info.get(v).low === info.get(v).index) {
    const component = [];
    let w;
    do {
      w = stack.pop();
      info.get(w).onStack = false;
      component.push(relative(root, w));
    } while (w !== v);
    if (component.length > 1) cycles.push(component.sort());
  }
}
for (const file of files) if (!info.has(file)) visit(file);
if (cycles.length > 0) {
  for (const c of cycles) console.error(`import cycle: ${c.join(" <-> ")}`);
  process.exit(1);
}
console.log(`no import cycle among ${files.length} modules`);
