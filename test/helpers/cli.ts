/** Running the trainer CLI's main() in-process from tests, with what it printed captured. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { main, type CliIO } from "../../src/cli/train.js";

/** Runs main() and returns its exit code with what it printed (a thrown error is exit 1). */
export async function runCli(
  args: string[],
): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { out: (l) => out.push(l), err: (l) => err.push(l), isTTY: false };
  try {
    return { code: await main(args, io), out, err };
  } catch (error) {
    err.push(`error: ${(error as Error).message}`);
    return { code: 1, out, err };
  }
}

/** A fresh directory under one temporary folder per test file, removed after the file's tests. */
export function tempDirs(prefix: string): () => string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let counter = 0;
  return () => mkdtempSync(join(root, `${counter++}-`));
}
