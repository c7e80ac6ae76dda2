/** Piscina worker: rebuilds the training graph from its plan and runs micro-shards and updates. */
import { workerData } from "piscina";
import type { OptimizerConfig } from "../src/train/parallel/optimizer-kernels.js";
import {
  barrierLoop,
  runPhase,
  type FaultInjection,
  type WorkerTask,
} from "../src/train/parallel/protocol.js";
import { ShardRunner } from "../src/train/parallel/shard.js";
import { type SharedState, type TrainPlan } from "../src/train/parallel/state.js";
import { useBackend, type BackendName } from "../src/backends/select.js";

/** What the pool hands every worker once, at start-up. */
interface WorkerData {
  train: TrainPlan;
  shared: SharedState;
  optimizer: OptimizerConfig;
  backend: BackendName;
  fault?: FaultInjection;
}

const data = workerData as WorkerData;
// The same kernels as the main thread: results stay bitwise identical to the in-process path.
useBackend(data.backend, (error) => {
  throw new Error(
    `worker cannot load the ${data.backend} backend the main thread uses: ${error.message}`,
  );
});
const runner = new ShardRunner(data.train, data.shared, data.optimizer);

/** Runs one task: a phase of a step, or the barrier loop until the pool exits. */
export default function run(task: WorkerTask): number {
  if (task.kind === "loop") {
    barrierLoop(
      runner,
      data.shared,
      task.worker,
      task.lanes,
      task.generation,
      task.threads,
      data.fault,
    );
  } else {
    runPhase(runner, data.shared, task.phase, task.worker, task.threads, data.fault);
  }
  return task.worker;
}
