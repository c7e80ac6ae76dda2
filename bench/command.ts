/**
 * Runs the command users type, `adjoint-train` (dist/src/cli/train.js, what `npm run
 * train-parallel` runs), in a fresh Node process with `--json`, and reads its summary: the
 * figures bench:train and bench:scaling report come from there, defaults and start-up included.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { packageRoot } from "../src/package.js";

/** The fields of the CLI's --json summary the benches read. */
export interface CommandSummary {
  samplesPerSecond: number;
  coldSamplesPerSecond: number;
  warmSamplesPerSecond: number;
  steps: number;
  threads: number;
  shardCount: number;
  batchSize: number;
  testAccuracy: number;
  paramsHash: string;
}

/** The command line, as a user would type it after `npm run train-parallel --`. */
export const commandLine = (args: readonly string[]): string =>
  `npm run train-parallel -- ${args.join(" ")}`;

/** Runs the CLI once with `args` plus --json; returns its summary. */
export async function runCommand(args: readonly string[]): Promise<CommandSummary> {
  const script = join(packageRoot(), "dist", "src", "cli", "train.js");
  const { stdout } = await promisify(execFile)(process.execPath, [script, ...args, "--json"], {
    maxBuffer: 64 << 20,
  });
  const last = stdout.trim().split("\n").pop() ?? "";
  return JSON.parse(last) as CommandSummary;
}

/** The median of `values` (the middle run of an odd count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Runs the CLI `repeat` times; per figure the median, and the paramsHash every run agreed on. */
export async function measureCommand(
  args: readonly string[],
  repeat: number,
): Promise<CommandSummary & { runs: CommandSummary[] }> {
  const runs: CommandSummary[] = [];
  for (let i = 0; i < repeat; i++) runs.push(await runCommand(args));
  const hashes = new Set(runs.map((r) => r.paramsHash));
  if (hashes.size !== 1) throw new Error(`${commandLine(args)}: runs disagree on paramsHash`);
  const pick = (key: "samplesPerSecond" | "coldSamplesPerSecond" | "warmSamplesPerSecond") =>
    median(runs.map((r) => r[key]));
  return {
    ...runs[0],
    samplesPerSecond: pick("samplesPerSecond"),
    coldSamplesPerSecond: pick("coldSamplesPerSecond"),
    warmSamplesPerSecond: pick("warmSamplesPerSecond"),
    runs,
  };
}
