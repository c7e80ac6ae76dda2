/**
 * The worker-pool step engine: piscina workers run the micro-shards of each step over shared
 * memory, then reduce and update parameter slices; the main thread only orchestrates.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Piscina } from "piscina";
import {
  allocateLanes,
  BARRIER,
  PHASE,
  runPhase,
  startGeneration,
  spinBudgetMs,
  spinUntil,
  type FaultInjection,
  type WorkerTask,
} from "./protocol.js";
import { CONTROL, type SharedState, type TrainPlan } from "./state.js";
import { ShardRunner } from "./shard.js";
import { backend } from "../../tensor/active.js";
import type { BackendName } from "../../backends/select.js";
import type { OptimizerConfig } from "./optimizer-kernels.js";
import { packageRoot } from "../../package.js";
import type { EngineFactory, StepEngine } from "./engine.js";

/** How the main thread starts phases: an Atomics barrier, or one piscina task per worker. */
export type StepProtocol = "barrier" | "tasks";

/** Options of the pool engine. */
export interface PoolOptions {
  threads: number;
  protocol?: StepProtocol;
  /** The kernels workers use: must be the main thread's, for bitwise-identical results. */
  backend?: BackendName;
  /** A step that takes longer fails with a timeout error (default 120 s). */
  stepTimeoutMs?: number;
  /**
   * Injects a fault in a worker (tests of the failure paths); the engine then waits for every
   * worker before its first step, so the faulty shard runs where the fault is.
   */
  fault?: FaultInjection;
  /**
   * Workers started ahead of the run (their threads booted and modules loaded while the caller
   * loaded its data): taken when their count and backend match and the protocol is the barrier
   * without a fault to inject, else released and a pool started as usual.
   */
  prestarted?: PrestartedPool;
  /**
   * Gradient values (parameters x micro-shards) below which the main thread reduces and updates
   * alone: less work than starting a phase and waking a worker for it costs (default 2^18). The bits are the same either way: each element's arithmetic is.
   */
  soloUpdateBelow?: number;
}

/** The compiled worker script; `npm run build` produces it. */
export function workerScript(): string {
  const path = join(packageRoot(), "dist", "workers", "shard-worker.js");
  if (!existsSync(path))
    throw new Error(`worker script ${path} is missing: run "npm run build" first`);
  return path;
}

/** A piscina pool of `workers` shard workers (started at once, never idle-terminated). */
function startPool(workers: number, workerData: object): Piscina<WorkerTask, number> {
  return new Piscina<WorkerTask, number>({
    filename: workerScript(),
    minThreads: workers,
    maxThreads: workers,
    idleTimeout: Infinity,
    concurrentTasksPerWorker: 1,
    workerData,
  });
}

/**
 * Shard workers started before their run: each boots its thread, loads its modules and its
 * backend (most of a worker's 190 ms start here) while the caller loads its data; the run
 * reaches them in its loop task. A PoolEngine takes them (options.prestarted); `release()` ends
 * them when none did (idempotent).
 */
export class PrestartedPool {
  private pool: Piscina<WorkerTask, number> | undefined;
  /** "ready" until an engine takes the workers ("taken") or they end ("released"). */
  state: "ready" | "taken" | "released" = "ready";

  /** Starts `workers` workers on the named backend. */
  constructor(
    readonly workers: number,
    readonly backend: BackendName,
  ) {
    this.pool = startPool(workers, { backend });
  }

  /** The pool, once, when it has `workers` workers on `backend`; else undefined (and released). */
  take(workers: number, backend: BackendName): Piscina<WorkerTask, number> | undefined {
    const pool = this.pool;
    if (pool === undefined || workers !== this.workers || backend !== this.backend) {
      void this.release();
      return undefined;
    }
    this.pool = undefined;
    this.state = "taken";
    return pool;
  }

  /** Ends the workers unless an engine took them. */
  async release(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    if (pool !== undefined) this.state = "released";
    await pool?.destroy();
  }
}

/** A step failure that names the failing part; the pool is destroyed before it is thrown. */
export class StepError extends Error {
  /** Wraps `cause` with the step number in the message. */
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = "StepError";
    if (cause instanceof Error && cause.stack)
      this.stack = `${this.stack}\ncaused by: ${cause.stack}`;
  }
}

/**
 * Steps on a warm piscina pool; any failure destroys the pool and rejects every later step.
 * The main thread takes part as thread 0 (shards 0, T, 2T, ... and the first parameter slice)
 * and T-1 workers take the rest: the busy threads then match the cores, so waiting threads can
 * poll instead of sleeping (waking a sleeping thread costs far more than a poll: protocol.ts).
 */
export class PoolEngine implements StepEngine {
  readonly threads: number;
  readonly protocol: StepProtocol;
  private readonly pool: Piscina<WorkerTask, number> | undefined;
  private readonly runner: ShardRunner;
  private readonly workers: number;
  private readonly control: Int32Array;
  /** Ready flags and roster positions of the workers (protocol.ts). */
  private readonly lanes: Int32Array;
  /** Workers the current phase waits for (the roster, without the main thread). */
  private waitingFor = 0;
  private readonly timeoutMs: number;
  private readonly fault: FaultInjection | undefined;
  private readonly soloUpdate: boolean;
  private readonly spinMs: number;
  private loops: Promise<number>[] = [];
  private failure: Promise<never> | undefined;
  private broken: Error | undefined;
  private closed = false;

  /** Starts `threads - 1` workers (minThreads = maxThreads, never idle-terminated). */
  constructor(
    private readonly shared: SharedState,
    train: TrainPlan,
    optimizer: OptimizerConfig,
    options: PoolOptions,
  ) {
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
    }
    this.threads = options.threads;
    this.workers = options.threads - 1;
    this.protocol = options.protocol ?? "barrier";
    this.timeoutMs = options.stepTimeoutMs ?? 120_000;
    this.fault = options.fault;
    this.spinMs = spinBudgetMs(options.threads);
    this.soloUpdate = shared.paramCount * shared.shardCount < (options.soloUpdateBelow ?? 1 << 18);
    this.control = shared.control;
    this.lanes = allocateLanes(this.workers);
    this.runner = new ShardRunner(train, shared, optimizer);
    if (this.workers === 0) {
      void options.prestarted?.release();
      return;
    }
    const setup = { train, shared, optimizer, fault: options.fault };
    const backendName = options.backend ?? (backend().name as BackendName);
    // Workers started before the run get it in their loop task (the barrier protocol's only).
    let early: Piscina<WorkerTask, number> | undefined;
    if (this.protocol === "barrier" && !options.fault) {
      early = options.prestarted?.take(this.workers, backendName);
    } else void options.prestarted?.release();
    this.pool = early ?? startPool(this.workers, { backend: backendName, setup });
    if (this.protocol === "barrier") {
      Atomics.store(this.control, BARRIER.abort, 0);
      const generation = Atomics.load(this.control, BARRIER.generation);
      this.loops = Array.from({ length: this.workers }, (_, k) =>
        this.pool!.run({
          kind: "loop",
          worker: k + 1,
          threads: this.threads,
          generation,
          lanes: this.lanes,
          setup: early ? setup : undefined,
        }),
      );
      // A loop task settles only on exit or failure: turn an early settle into a step failure.
      this.failure = Promise.race(
        this.loops.map((loop, k) =>
          loop.then(
            () => Promise.reject(new Error(`worker ${k + 1} left the step loop`)),
            (error: unknown) => Promise.reject(error),
          ),
        ),
      );
      this.failure.catch(() => {}); // observed in step(); never an unhandled rejection
    }
  }

  /** Resolves once every worker has started its loop (the barrier protocol; at once otherwise). */
  async ready(): Promise<void> {
    if (this.protocol !== "barrier") return;
    for (let k = 1; k <= this.workers; k++) {
      while (Atomics.load(this.lanes, k) !== 1) {
        const wait = Atomics.waitAsync(this.lanes, k, 0, 50);
        if (wait.async) await Promise.race([wait.value, this.failure]);
      }
    }
  }

  /** One synchronous step: the shard phase, then the reduce-and-update phase. */
  async step(): Promise<void> {
    if (this.broken) throw this.broken;
    if (this.closed) throw new Error("the worker pool is closed");
    const step = this.control[CONTROL.step];
    try {
      await this.withTimeout(this.runGeneration(PHASE.shards), "micro-shards");
      // Small updates: the whole update here, no phase to start, no worker to wake.
      if (this.soloUpdate) this.ownPart(PHASE.update, 1);
      else await this.withTimeout(this.runGeneration(PHASE.update), "update");
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      this.broken = new StepError(`step ${step} failed: ${reason}`, error);
      await this.destroy();
      throw this.broken;
    }
  }

  /** Starts the phase on the workers, runs thread 0's part here, then waits for the workers. */
  private async runGeneration(phase: number): Promise<void> {
    let tasks: Promise<unknown> | undefined;
    let threads = this.threads;
    if (this.pool && this.protocol === "tasks") {
      tasks = Promise.all(
        Array.from({ length: this.workers }, (_, k) =>
          this.pool!.run({ kind: "phase", phase, worker: k + 1, threads: this.threads }),
        ),
      );
      tasks.catch(() => {}); // awaited below, after this thread's own part
    } else if (this.pool) {
      // Only the workers already running take part; the main thread does the others' shards.
      this.waitingFor = startGeneration(this.control, this.lanes, phase);
      threads = this.waitingFor + 1;
    }
    // Shards are claimed under the barrier, pinned to threads when a fault is injected (tests).
    const claims =
      this.pool && this.protocol === "barrier" && !this.fault ? this.control : undefined;
    this.ownPart(phase, threads, claims);
    if (tasks) await tasks;
    else if (this.pool) await Promise.race([this.failure!, this.waitDone()]);
  }

  /** Runs thread 0's part of `phase` here; a failure flags abort and names the main thread. */
  private ownPart(phase: number, threads: number, claims?: Int32Array): void {
    try {
      runPhase(this.runner, this.shared, phase, 0, threads, undefined, claims);
    } catch (error) {
      Atomics.store(this.control, BARRIER.abort, 1);
      throw new Error(`main thread: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
  }

  /** Resolves when every worker counted itself done; rejects if one flagged a failure. */
  private async waitDone(): Promise<void> {
    const control = this.control;
    spinUntil(() => Atomics.load(control, BARRIER.done) >= this.waitingFor, this.spinMs);
    for (;;) {
      const done = Atomics.load(control, BARRIER.done);
      if (done >= this.waitingFor) break;
      const result = Atomics.waitAsync(control, BARRIER.done, done);
      if (result.async) await result.value;
    }
    if (Atomics.load(control, BARRIER.abort) !== 0) {
      // The failing worker's task rejects with its error; give it the chance to arrive first.
      await this.failure;
    }
  }

  private withTimeout<T>(work: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`${what} phase timed out after ${this.timeoutMs} ms (a worker hangs?)`)),
        this.timeoutMs,
      );
    });
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }

  private async destroy(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.control, BARRIER.abort, 1);
    startGeneration(this.control, this.lanes, PHASE.exit);
    await this.pool?.destroy();
    this.runner.dispose();
  }

  /** Ends the barrier loops and terminates the workers; gives the main thread's buffers back. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.protocol === "barrier" && !this.broken) {
      this.closed = true;
      startGeneration(this.control, this.lanes, PHASE.exit);
      await Promise.allSettled(this.loops);
      await this.pool?.destroy();
      this.runner.dispose();
      return;
    }
    await this.destroy();
  }
}

/** An engine factory for a pool of `options.threads` workers. */
export function poolEngine(options: PoolOptions): EngineFactory {
  return async (shared, train, optimizer) => {
    const engine = new PoolEngine(shared, train, optimizer, options);
    if (options.fault) await engine.ready();
    return engine;
  };
}
