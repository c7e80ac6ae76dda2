/**
 * The step protocol shared by the main thread and the shard workers: the control words of the
 * Atomics barrier, the task messages, and what a worker does for each phase.
 */
import { availableParallelism } from "node:os";
import { CONTROL, sliceBounds, type SharedState, type TrainPlan } from "./state.js";
import type { OptimizerConfig } from "./optimizer-kernels.js";
import { type ShardRunner } from "./shard.js";

/** Control words of the barrier (after the shard state's own words). */
export const BARRIER = {
  generation: CONTROL.protocol, // bumped by the main thread to start a phase
  done: CONTROL.protocol + 1, // workers that finished the phase
  abort: CONTROL.protocol + 2, // set by a failing worker or by the main thread
  phase: CONTROL.protocol + 3, // which phase the generation starts
  roster: CONTROL.protocol + 4, // the generation whose roster is written (stamped before rewriting)
  participants: CONTROL.protocol + 5, // threads in the generation's roster, the main thread included
  claim: CONTROL.protocol + 6, // the next micro-shard to take (reset by each generation)
} as const;

/**
 * The pool's lanes, one SharedArrayBuffer: [0, workers] ready flags (worker k sets lanes[k] when
 * its loop starts), then [workers + 1, 2 workers + 1] each worker's position in the current
 * generation's roster (0: not taking part). The main thread (position 0) takes only ready workers
 * into a generation, so a step never waits for a worker still starting: it runs their shards.
 */
export function allocateLanes(workers: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * 2 * (workers + 1)));
}

/**
 * Publishes the roster and `phase` of the next generation, then starts it: the ready workers,
 * numbered 1..n in worker order. Returns n (the workers the main thread then waits for).
 */
export function startGeneration(control: Int32Array, lanes: Int32Array, phase: number): number {
  const workers = lanes.length / 2 - 1;
  // Stamped first: a worker that reads this stamp mid-rewrite skips the generation it woke for.
  Atomics.store(control, BARRIER.roster, Atomics.load(control, BARRIER.generation) + 1);
  let n = 0;
  for (let k = 1; k <= workers; k++) {
    Atomics.store(lanes, workers + 1 + k, Atomics.load(lanes, k) === 1 ? ++n : 0);
  }
  Atomics.store(control, BARRIER.participants, n + 1);
  Atomics.store(control, BARRIER.done, 0);
  Atomics.store(control, BARRIER.claim, 0);
  Atomics.store(control, BARRIER.phase, phase);
  Atomics.add(control, BARRIER.generation, 1);
  Atomics.notify(control, BARRIER.generation);
  return n;
}

/**
 * How long a waiting thread polls the control block before it sleeps, in ms. Waking a sleeping
 * thread costs a sizeable part of a shard on a virtual machine (the hypervisor wakes an idle
 * vCPU); while the threads do not outnumber the cores, polling through the gap between two phases
 * takes a core from nobody (`npm run bench:scaling` prints the per-step synchronisation cost). With more threads than cores a poller would take a
 * core from a thread with work: poll only briefly.
 */
export function spinBudgetMs(threads: number): number {
  return threads <= availableParallelism() ? 2 : 0.05;
}

/** Polls until `ready()` or `budgetMs` pass; returns whether it became ready. */
export function spinUntil(ready: () => boolean, budgetMs: number): boolean {
  const end = performance.now() + budgetMs;
  for (;;) {
    for (let i = 0; i < 64; i++) if (ready()) return true;
    if (performance.now() >= end) return false;
  }
}

/** Phases of one synchronous step. */
export const PHASE = { shards: 1, update: 2, exit: 3 } as const;

/** A task for a worker: one phase (piscina-task protocol) or the barrier loop. */
export type WorkerTask =
  | { kind: "phase"; phase: number; worker: number; threads: number }
  | {
      kind: "loop";
      worker: number;
      threads: number;
      generation: number;
      lanes: Int32Array;
      /** The run, for a worker started before it (PrestartedPool) that has none yet. */
      setup?: WorkerSetup;
    };

/** A run as a worker needs it: its plan, shared state and optimizer (and a test's fault). */
export interface WorkerSetup {
  train: TrainPlan;
  shared: SharedState;
  optimizer: OptimizerConfig;
  fault?: FaultInjection;
}

/** A fault to inject in a worker (tests of the failure paths only). */
export interface FaultInjection {
  step: number;
  shard: number;
  kind: "throw" | "exit" | "hang";
}

/**
 * Runs this thread's part of a phase: in the shard phase, with `claims` (the barrier's control
 * words), every micro-shard it takes from the generation's counter, so a thread slowed down (by
 * its JIT warming up, by a busy core) takes fewer; without, shards worker, worker+threads, ...
 * (the tasks protocol, and fault injection, which pins shards to threads). Which thread computes a
 * shard never changes its slot. In the update phase, its slice of the parameters.
 */
export function runPhase(
  runner: ShardRunner,
  shared: SharedState,
  phase: number,
  worker: number,
  threads: number,
  fault?: FaultInjection,
  claims?: Int32Array,
): void {
  if (phase === PHASE.shards) {
    const count = shared.shardCount;
    let s = claims ? Atomics.add(claims, BARRIER.claim, 1) : worker;
    if (s < count) runner.beginStep();
    while (s < count) {
      if (fault && fault.shard === s && fault.step === shared.control[CONTROL.step])
        injectFault(fault);
      runner.runShard(s);
      s = claims ? Atomics.add(claims, BARRIER.claim, 1) : s + threads;
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
 * The barrier loop a worker runs for the life of the pool: flag itself ready, then wait for a new
 * generation and, when the roster names it, run its part of the phase and count itself done.
 * Returns on the exit phase; throws (after flagging abort) on failure.
 */
export function barrierLoop(
  runner: ShardRunner,
  shared: SharedState,
  worker: number,
  lanes: Int32Array,
  generation: number,
  threads: number,
  fault?: FaultInjection,
): void {
  const control = shared.control;
  const workers = lanes.length / 2 - 1;
  runner.warmUp(); // before it flags itself ready: the main thread does its shards meanwhile
  Atomics.store(lanes, worker, 1);
  Atomics.notify(lanes, worker);
  // Start from the generation the pool had when it queued this loop, not the current one: the
  // first phase may have been started before this worker came up.
  let seen = generation;
  const spin = spinBudgetMs(threads);
  for (;;) {
    // The next phase usually follows within a millisecond: poll before sleeping.
    spinUntil(() => Atomics.load(control, BARRIER.generation) !== seen, spin);
    Atomics.wait(control, BARRIER.generation, seen);
    seen = Atomics.load(control, BARRIER.generation);
    const stamp = Atomics.load(control, BARRIER.roster);
    const phase = Atomics.load(control, BARRIER.phase);
    if (phase === PHASE.exit || Atomics.load(control, BARRIER.abort) !== 0) return;
    const position = Atomics.load(lanes, workers + 1 + worker);
    const participants = Atomics.load(control, BARRIER.participants);
    // Not in this generation's roster (it started before this worker was ready), or the roster
    // changed while it was read (the main thread already prepares the next one): wait.
    if (position === 0 || stamp !== seen || Atomics.load(control, BARRIER.roster) !== seen)
      continue;
    try {
      runPhase(runner, shared, phase, position, participants, fault, fault ? undefined : control);
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
