/** The worker pool: bitwise-identical results for any thread count, failures, timeouts, signals. */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTROL, type SharedState } from "../../../src/train/parallel/state.js";
import { type ShardRunner } from "../../../src/train/parallel/shard.js";
import { type ShiftAugment } from "../../../src/train/parallel/augment.js";
import {
  allocateLanes,
  BARRIER,
  PHASE,
  runPhase,
  startGeneration,
  type FaultInjection,
} from "../../../src/train/parallel/protocol.js";
import { loadDigits, randomSplit, standardize } from "../../../src/train/data.js";
import { packageRoot } from "../../../src/package.js";
import { inProcessEngine, type EngineFactory } from "../../../src/train/parallel/engine.js";
import { initParams, modelSpec, type ModelSpec } from "../../../src/train/models.js";
import {
  poolEngine,
  PrestartedPool,
  workerScript,
  type PoolEngine,
  type StepProtocol,
} from "../../../src/train/parallel/pool.js";
import { Rng } from "../../../src/train/random.js";
import { loadParams, paramsHash } from "../../../src/train/serialize.js";
import { prepareTraining, train } from "../../../src/train/trainer.js";
import { runStep } from "../../../src/train/parallel/state.js";
import { useBackend, type BackendName } from "../../../src/backends/select.js";
import { jsBackend } from "../../../src/tensor/kernels/js.js";
import { backend, setBackend } from "../../../src/tensor/active.js";
import type { OptimizerConfig } from "../../../src/train/parallel/optimizer-kernels.js";

const split = standardize(randomSplit(loadDigits({ dtype: "float32" }), 0.2, 0));
const optimizer: OptimizerConfig = { kind: "adam", lr: 0.01, weightDecay: 0.01 };
const tmp = mkdtempSync(join(tmpdir(), "adjoint-parallel-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(() => {
  // The pool runs the compiled worker: `npm test` builds first.
  expect(existsSync(workerScript())).toBe(true);
});

async function finalHash(
  spec: ModelSpec,
  createEngine: EngineFactory,
  steps = 30,
  augment?: ShiftAugment,
): Promise<string> {
  const result = await train({
    augment,
    spec,
    split,
    dtype: "float32",
    batchSize: 50,
    epochs: 2,
    maxSteps: steps,
    optimizer,
    seed: 3,
    shardCount: 6,
    createEngine,
  });
  expect(result.steps).toBe(steps);
  return paramsHash(result.params);
}

describe.each(["js", "wasm"] as const)(
  "bitwise identical for any thread count (%s kernels)",
  (name) => {
    beforeAll(() => void useBackend(name));
    afterAll(() => void setBackend(jsBackend));

    for (const [label, spec] of [
      ["logreg", modelSpec("logreg", 64, [], 10)],
      ["mlp", modelSpec("mlp", 64, [32, 16], 10)],
    ] as const) {
      it(`${label}: in-process = pool with 1, 2, 3 threads (barrier) = 2 threads (tasks)`, async () => {
        const reference = await finalHash(spec, inProcessEngine);
        const runs: [number, StepProtocol, number?][] = [
          [1, "barrier"],
          [2, "barrier"],
          [3, "barrier"],
          [2, "tasks"],
          [2, "barrier", 0], // the update split between the threads, as for large models
          [3, "barrier", 0],
        ];
        for (const [threads, protocol, soloUpdateBelow] of runs) {
          expect(
            await finalHash(spec, poolEngine({ threads, protocol, soloUpdateBelow })),
            `${threads} ${protocol} ${soloUpdateBelow}`,
          ).toBe(reference);
        }
      });
    }
  },
);

it("workers started before their run (PrestartedPool) give the in-process bits, taken or not", async () => {
  const spec = modelSpec("mlp", 64, [16], 10);
  const reference = await finalHash(spec, inProcessEngine, 20);
  const name = backend().name as BackendName;
  // Taken: the run reaches the workers in their loop tasks (a worker without one throws). The
  // engine waits for both before its first step, so a worker that failed cannot go unseen.
  const early = new PrestartedPool(2, name);
  const factory = poolEngine({ threads: 3, prestarted: early });
  const waited: EngineFactory = async (...args) => {
    const engine = await factory(...args);
    await (engine as PoolEngine).ready();
    return engine;
  };
  expect(await finalHash(spec, waited, 20)).toBe(reference);
  expect(early.state).toBe("taken");
  expect(early.take(2, name)).toBeUndefined(); // once
  // Another count, or the tasks protocol: released, and a pool started as usual.
  for (const [workers, protocol] of [
    [1, "barrier"],
    [2, "tasks"],
  ] as const) {
    const other = new PrestartedPool(workers, name);
    const engine = poolEngine({ threads: 3, protocol, prestarted: other });
    expect(await finalHash(spec, engine, 20)).toBe(reference);
    expect(other.state).toBe("released");
    await other.release(); // idempotent
  }
});

it("with shift augmentation too: in-process = 2 and 3 workers", async () => {
  const spec = modelSpec("mlp", 64, [16], 10);
  const augment: ShiftAugment = { width: 8, height: 8, maxShift: 1, seed: 5 };
  const reference = await finalHash(spec, inProcessEngine, 20, augment);
  expect(await finalHash(spec, inProcessEngine, 20)).not.toBe(reference);
  for (const threads of [2, 3]) {
    expect(await finalHash(spec, poolEngine({ threads }), 20, augment)).toBe(reference);
  }
});

/** Fresh shared state of a small MLP, batches of 32 in 4 micro-shards, and an engine over it. */
async function smallRun(factory: EngineFactory) {
  const spec = modelSpec("mlp", 64, [16], 10);
  const initial = initParams(spec, new Rng(0), "float32");
  const prepared = prepareTraining(spec, split.train, "float32", optimizer, 4, 32, initial);
  const engine = await factory(prepared.shared, prepared.trainPlan, optimizer);
  return { shared: prepared.shared, engine };
}

/** A pool engine over fresh shared state for one step, with a fault injected at step 2. */
async function faultyPool(fault: FaultInjection, protocol: StepProtocol, stepTimeoutMs = 30_000) {
  const { shared, engine } = await smallRun(
    poolEngine({ threads: 2, protocol, fault, stepTimeoutMs }),
  );
  const step = (t: number) =>
    runStep(
      engine,
      shared,
      Int32Array.from({ length: 32 }, (_, i) => (i * 7 + t) % 1437),
      t,
    );
  return { shared, engine, step };
}

describe.each(["barrier", "tasks"] as const)("a failing worker (%s protocol)", (protocol) => {
  it("throwing: the step fails with the worker's error and stack, parameters unchanged", async () => {
    const { shared, engine, step } = await faultyPool(
      { kind: "throw", step: 2, shard: 1 },
      protocol,
    );
    await step(1);
    const cur = shared.control[CONTROL.current];
    const before = Float32Array.from(shared.params[cur]);
    const started = performance.now();
    const error = await step(2).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error!.message).toMatch(/step 2 failed: injected fault in shard 1 at step 2/);
    expect(error!.stack).toMatch(/injectFault|runPhase|protocol/);
    expect(performance.now() - started).toBeLessThan(5000);
    // Not flipped, not touched: the current buffer holds exactly the parameters of step 1.
    expect(shared.control[CONTROL.current]).toBe(cur);
    const now = shared.params[cur];
    expect(
      Buffer.from(now.buffer, now.byteOffset, now.byteLength).equals(Buffer.from(before.buffer)),
    ).toBe(true);
    // The pool is gone: later steps reject at once.
    await expect(engine.step()).rejects.toThrow(/step 2 failed/);
    await engine.close();
  });

  it("exiting: the step fails within 5 s, no hang", async () => {
    const { engine, step } = await faultyPool({ kind: "exit", step: 1, shard: 1 }, protocol);
    const started = performance.now();
    await expect(step(1)).rejects.toThrow(/step 1 failed/);
    expect(performance.now() - started).toBeLessThan(5000);
    await engine.close();
  });

  it("hanging: the per-step timeout turns it into the same failure", async () => {
    const { engine, step } = await faultyPool({ kind: "hang", step: 1, shard: 3 }, protocol, 300);
    const started = performance.now();
    await expect(step(1)).rejects.toThrow(/step 1 failed: .*timed out after 300 ms/);
    expect(performance.now() - started).toBeLessThan(5000);
    await engine.close();
  });
});

/** Runs the built CLI; resolves with its exit code, output and the time it took. */
function runCli(
  args: string[],
  env: Record<string, string> = {},
  onLine?: (line: string, child: ReturnType<typeof spawn>) => void,
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [join(packageRoot(), "dist/src/cli/train.js"), ...args], {
    env: { ...process.env, ...env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const text = chunk.toString();
    stdout += text;
    for (const line of text.split("\n")) if (line) onLine?.(line, child);
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) =>
    child.on("close", (code) => resolve({ code, stdout, stderr, ms: performance.now() - started })),
  );
}

describe("the CLI with workers", () => {
  const base = [
    ...["--dataset", "digits", "--model", "mlp", "--hidden", "32"],
    ...["--batch-size", "32", "--micro-shards", "4"],
  ];

  it("exits non-zero within 5 s when a worker throws, keeping the last checkpoint loadable", async () => {
    const checkpoint = join(tmp, "fault.ckpt");
    const ok = await runCli([
      ...base,
      "--epochs",
      "1",
      "--threads",
      "2",
      "--checkpoint",
      checkpoint,
    ]);
    expect(ok.code).toBe(0);
    const saved = loadParams(checkpoint);
    const failed = await runCli(
      [...base, "--epochs", "3", "--threads", "2", "--checkpoint", checkpoint, "--resume"],
      { ADJOINT_FAULT: "throw@60:3" },
    );
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/step 60 failed: injected fault in shard 3 at step 60/);
    expect(failed.ms).toBeLessThan(15_000);
    // Epoch 2 ended at step 90: the checkpoint still holds epoch 1's state, intact.
    const after = loadParams(checkpoint);
    expect(paramsHash(after.params)).toBe(paramsHash(saved.params));
  });

  it("SIGINT stops at a step boundary, writes the checkpoint, exits 130; resume matches", async () => {
    const straight = await runCli([...base, "--epochs", "3", "--threads", "2", "--json"]);
    expect(straight.code).toBe(0);
    const expected = JSON.parse(straight.stdout.trim().split("\n").pop()!).paramsHash;

    const checkpoint = join(tmp, "sigint.ckpt");
    let sent = false;
    const interrupted = await runCli(
      [...base, "--epochs", "3", "--threads", "2", "--checkpoint", checkpoint],
      {},
      (line, child) => {
        if (!sent && line.startsWith("epoch   1/3")) {
          sent = true;
          child.kill("SIGINT");
        }
      },
    );
    expect(sent).toBe(true);
    expect(interrupted.code).toBe(130);
    expect(existsSync(checkpoint)).toBe(true);
    const resumed = await runCli([
      ...base,
      "--epochs",
      "3",
      "--threads",
      "3",
      "--checkpoint",
      checkpoint,
      "--resume",
      "--json",
    ]);
    expect(resumed.code).toBe(0);
    expect(JSON.parse(resumed.stdout.trim().split("\n").pop()!).paramsHash).toBe(expected);
  });
});

describe("the barrier's roster", () => {
  it("takes only ready workers into a generation, numbered in worker order after the main thread", () => {
    const control = new Int32Array(new SharedArrayBuffer(4 * 16));
    const lanes = allocateLanes(3);
    Atomics.store(lanes, 1, 1);
    Atomics.store(lanes, 3, 1); // worker 2 still starting
    const before = Atomics.load(control, BARRIER.generation);
    expect(startGeneration(control, lanes, PHASE.shards)).toBe(2);
    expect(Atomics.load(control, BARRIER.generation)).toBe(before + 1);
    // The roster is stamped with the generation it belongs to, so a worker can check it.
    expect(Atomics.load(control, BARRIER.roster)).toBe(before + 1);
    expect([...lanes.subarray(4 + 1)]).toEqual([1, 0, 2]);
    expect(Atomics.load(control, BARRIER.participants)).toBe(3);
    expect(Atomics.load(control, BARRIER.phase)).toBe(PHASE.shards);
    Atomics.store(lanes, 2, 1);
    expect(startGeneration(control, lanes, PHASE.update)).toBe(3);
    expect([...lanes.subarray(4 + 1)]).toEqual([1, 2, 3]);
  });

  it("threads take micro-shards from the generation's counter; a fault pins them to threads", () => {
    const control = new Int32Array(new SharedArrayBuffer(4 * 16));
    const shared = { shardCount: 5, control } as unknown as SharedState;
    const ran: number[] = [];
    let staged = 0;
    const runner = {
      beginStep: () => staged++,
      runShard: (s: number) => ran.push(s),
    } as unknown as ShardRunner;
    startGeneration(control, allocateLanes(1), PHASE.shards);
    Atomics.store(control, BARRIER.claim, 2); // another thread took shards 0 and 1
    runPhase(runner, shared, PHASE.shards, 0, 2, undefined, control);
    expect(ran).toEqual([2, 3, 4]);
    expect(staged).toBe(1);
    runPhase(runner, shared, PHASE.shards, 0, 2, undefined, control); // all taken: nothing
    expect([ran.length, staged]).toEqual([3, 1]);
    // A new generation resets the counter; without claims, thread 1 of 2 runs shards 1 and 3.
    startGeneration(control, allocateLanes(1), PHASE.shards);
    expect(Atomics.load(control, BARRIER.claim)).toBe(0);
    ran.length = 0;
    runPhase(runner, shared, PHASE.shards, 1, 2);
    expect(ran).toEqual([1, 3]);
  });

  it("a pool's steps before and after its workers are up give the in-process bits", async () => {
    const run = async (factory: EngineFactory, waitFirst: boolean) => {
      const { shared, engine } = await smallRun(factory);
      if (waitFirst) await (engine as PoolEngine).ready();
      for (let t = 1; t <= 6; t++) {
        await runStep(
          engine,
          shared,
          Int32Array.from({ length: 32 }, (_, i) => (i * 5 + t) % 1437),
          t,
        );
      }
      await engine.close();
      return Buffer.from(
        Float32Array.from(shared.params[shared.control[CONTROL.current]]).buffer,
      ).toString("hex");
    };
    const reference = await run(inProcessEngine, false);
    expect(await run(poolEngine({ threads: 3 }), false)).toBe(reference);
    expect(await run(poolEngine({ threads: 3 }), true)).toBe(reference);
  });
});
