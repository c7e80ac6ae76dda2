/**
 * The step protocol shared by the main thread and the shard workers: the control words of the
 * Atomics barrier, the task messages, and what a worker does for each phase.
 */
import { CONTROL, sliceBounds, type ShardRunner, type SharedState } from "./shard.js";

/** Control words of the barrier (after the shard state's own words). */
export const BARRIER = {
  generation: CONTROL.protocol, // bumped by the main thread to start a phase
  done: CONTROL.protocol + 1, // workers that finished the phase
  abort: CONTROL.protocol + 2, // set by a failing worker or by the main thread
  phase: CONTROL.protocol + 3, // which phase the generation starts
} as const;

/** Polls of the control block before a thread sleeps (about 20 µs). */
export const SPIN_ITERATIONS = 1000;

/** Phases of one synchronous step. */
export const PHASE = { shards: 1, update: 2, exit: 3 } as const;

/** A task for a worker: one phase (piscina-task protocol) or the barrier loop. */
export type WorkerTask =
  | { kind: "phase"; phase: number; worker: number; threads: number }
  | { kind: "loop"; worker: number; threads: number; generation: number };

/** A fault to inject in a worker (tests of the failure paths only). */
export interface FaultInjection {
  step: number;
  shard: number;
  kind: "throw" | "exit" | "hang";
}

/** Runs this worker's part of a phase: micro-shards worker, worker+threads, ...; or its slice. */
export function runPhase(
  runner: ShardRunner,
  shared: SharedState,
  phase: number,
  worker: number,
  threads: number,
  fault?: FaultInjection,
): void {
  if (phase === PHASE.shards) {
    if (worker < shared.shardCount) runner.beginStep();
    for (let s = worker; s < shared.shardCount; s += threads) {
      if (fault && fault.shard === s && fault.step === shared.control[CONTROL.step])
        injectFault(fault);
      runner.runShard(s);
    }
  } else if (phase === PHASE.update) {
    const [start, end] = sliceBounds(shared.paramCount, threads, worker);
    runner.reduceAndUpdate(start, end);
  }
}

function injectFault(fault: FaultInjection): void {
  if (fault.kind === "throw")
    throw new Error(`injected fault in shard ${fault.shard} at step ${fault.step}`);
  if (fault.kind === "exit") process.exit(3);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // hang until terminated
}

/**
 * The barrier loop a worker runs for the life of the pool: wait for a new generation, run the
 * phase, count itself done. Returns on the exit phase; throws (after flagging abort) on failure.
 */
export function barrierLoop(
  runner: ShardRunner,
  shared: SharedState,
  worker: number,
  threads: number,
  generation: number,
  fault?: FaultInjection,
): void {
  const control = shared.control;
  // Start from the generation the pool had when it queued this loop, not the current one: the
  // first phase may have been started before this worker came up.
  let seen = generation;
  for (;;) {
    // The next phase usually follows within microseconds: spin briefly before sleeping.
    for (let spin = 0; spin < SPIN_ITERATIONS; spin++) {
      if (Atomics.load(control, BARRIER.generation) !== seen) break;
    }
    Atomics.wait(control, BARRIER.generation, seen);
    seen = Atomics.load(control, BARRIER.generation);
    const phase = Atomics.load(control, BARRIER.phase);
    if (phase === PHASE.exit || Atomics.load(control, BARRIER.abort) !== 0) return;
    try {
      runPhase(runner, shared, phase, worker, threads, fault);
    } catch (error) {
      // Flag the failure before counting ourselves done, so the main thread never mistakes it
      // for success; the error itself reaches it through the rejected task.
      Atomics.store(control, BARRIER.abort, 1);
      throw error;
    } finally {
      Atomics.add(control, BARRIER.done, 1);
      Atomics.notify(control, BARRIER.done);
    }
  }
}
