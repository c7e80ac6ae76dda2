/** Where adjoint's own files are: the folder holding its package.json. */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The folder holding package.json above this module (works from src/ and from dist/src/). */
export function packageRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  let dir = start;
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`packageRoot: no package.json in ${start} or above`);
    dir = parent;
  }
}
