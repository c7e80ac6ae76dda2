/** Piscina worker: rebuilds the training graph from its plan and runs micro-shards and updates. */
import { workerData } from "piscina";
import {
  barrierLoop,
  runPhase,
  type WorkerSetup,
  type WorkerTask,
} from "../src/train/parallel/protocol.js";
import { ShardRunner } from "../src/train/parallel/shard.js";
import { useBackend, type BackendName } from "../src/backends/select.js";

/**
 * What the pool hands every worker at start-up: the backend, and the run unless the worker was
 * started before it (a PrestartedPool), whose loop task then brings it.
 */
interface WorkerData {
  backend: BackendName;
  setup?: WorkerSetup;
}

const data = workerData as WorkerData;
// The same kernels as the main thread: results stay bitwise identical to the in-process path.
useBackend(data.backend, (error) => {
  throw new Error(
    `worker cannot load the ${data.backend} backend the main thread uses: ${error.message}`,
  );
});
let setup = data.setup;
let runner = setup && new ShardRunner(setup.train, setup.shared, setup.optimizer);

/** Runs one task: a phase of a step, or the barrier loop until the pool exits. */
export default function run(task: WorkerTask): number {
  if (task.kind === "loop" && task.setup) {
    setup = task.setup;
    runner = new ShardRunner(setup.train, setup.shared, setup.optimizer);
  }
  if (!setup || !runner) throw new Error(`worker ${task.worker} was given no run to train`);
  if (task.kind === "loop") {
    barrierLoop(
      runner,
      setup.shared,
      task.worker,
      task.lanes,
      task.generation,
      task.threads,
      setup.fault,
    );
  } else {
    runPhase(runner, setup.shared, task.phase, task.worker, task.threads, setup.fault);
  }
  return task.worker;
}
