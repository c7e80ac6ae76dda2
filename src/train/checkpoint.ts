/** Checkpoints of a training run: the file's claim and lock, its contents, resume and save. */
import { existsSync } from "node:fs";
import { Tensor } from "../tensor/tensor.js";
import { Rng } from "./random.js";
import { loadParams, PARAMS_VERSION, saveParams } from "./serialize.js";
import { acquireLock, removeStaleTempFiles } from "./files.js";
import { currentParams, currentState, restoreState, type SharedState } from "./parallel/state.js";
import type { RunEpoch } from "./loop.js";

/** Where a run is, as a checkpoint stores it. */
export interface Position {
  epoch: number;
  batch: number;
  t: number;
  rngState: number[];
  history: RunEpoch[];
  epochLossSum: number;
  epochSamples: number;
}

/** Where a training run keeps its checkpoint, and what identifies the run in it. */
export interface CheckpointSpec {
  path: string;
  /** Parameter names, in the plan's order (the checkpoint's tensor names). */
  names: readonly string[];
  /** The model's description stored with the parameters. */
  model: Record<string, unknown>;
  /** Identifies the run's settings; a resumed run must match it. */
  fingerprint: Record<string, unknown>;
  resume?: boolean;
  overwrite?: boolean;
  onNotice?: (line: string) => void;
}

/**
 * A run's checkpoint file: opened (its path claimed and locked) before the first step, resumed
 * from where asked, saved after every epoch and at a stop, released when the run ends.
 */
export class Checkpoint {
  private constructor(
    private readonly spec: CheckpointSpec,
    private readonly shared: SharedState,
    private readonly shapes: readonly number[][],
    /** Removes the lock; idempotent. */
    readonly release: () => void,
  ) {}

  /**
   * Claims `spec.path` for this run: removes temp files a killed writer left, refuses an existing
   * checkpoint unless the run resumes or overwrites it, and holds `path.lock`.
   */
  static open(spec: CheckpointSpec, shared: SharedState, shapes: readonly number[][]): Checkpoint {
    return new Checkpoint(spec, shared, shapes, claimCheckpoint(spec));
  }

  /** Whether the run continues from the file (else it starts afresh). */
  get resuming(): boolean {
    return this.spec.resume === true;
  }

  /** Loads the saved parameters and optimizer state; the position to continue from. */
  resume(run: RunShape): Position {
    return readCheckpoint(this.spec, this.shared, this.shapes, run);
  }

  /** Writes the current parameters and optimizer state with the run's position (atomically). */
  save(at: Position): void {
    writeCheckpoint(this.spec, this.shared, this.shapes, at);
  }
}

/** The `extra.kind` of a checkpoint file (a parameter file has none). */
export const CHECKPOINT_KIND = "adjoint-checkpoint";

function writeCheckpoint(
  checkpoint: CheckpointSpec,
  shared: SharedState,
  shapes: readonly number[][],
  at: Position,
): void {
  const { names } = checkpoint;
  const tensors = [
    ...currentParams(shared, shapes).map((t, i) => ({ name: names[i], t })),
    ...currentState(shared, shapes).flatMap((list, k) =>
      list.map((t, i) => ({ name: `state${k}.${names[i]}`, t })),
    ),
  ];
  saveParams(checkpoint.path, {
    format: "adjoint-params",
    version: PARAMS_VERSION,
    model: checkpoint.model,
    params: tensors.map(({ name, t }) => ({
      name,
      shape: [...t.shape],
      dtype: t.dtype,
      data: t.data,
    })),
    extra: { kind: CHECKPOINT_KIND, position: at, fingerprint: checkpoint.fingerprint },
  });
}

/** What a checkpoint's position must fit: the run that resumes it. */
export interface RunShape {
  epochs: number;
  batchesPerEpoch: number;
  batchSize: number;
}

function readCheckpoint(
  checkpoint: CheckpointSpec,
  shared: SharedState,
  shapes: readonly number[][],
  run: RunShape,
): Position {
  const { path, fingerprint } = checkpoint;
  const specs = checkpoint.names.map((name, i) => ({ name, shape: shapes[i] }));
  const record = loadParams(path);
  const extra = record.extra as
    { kind?: string; position?: unknown; fingerprint?: unknown } | undefined;
  if (extra?.kind !== CHECKPOINT_KIND || extra.position === undefined) {
    throw new Error(`${path}: not a training checkpoint (a parameter file? use --load for those)`);
  }
  checkFingerprint(path, extra.fingerprint, fingerprint);
  const position = checkPosition(path, extra.position, run);
  const byName = new Map(record.params.map((p) => [p.name, p]));
  const expected = new Set<string>();
  const take = (name: string, shape: readonly number[]) => {
    expected.add(name);
    const p = byName.get(name);
    if (!p) throw new Error(`${path}: checkpoint lacks tensor "${name}"`);
    if (p.dtype !== shared.dtype)
      throw new Error(`${path}: tensor "${name}" is ${p.dtype}, the run uses ${shared.dtype}`);
    if (JSON.stringify(p.shape) !== JSON.stringify(shape))
      throw new Error(
        `${path}: tensor "${name}" has shape [${p.shape}], the model needs [${shape}]`,
      );
    return new Tensor(p.data, p.shape);
  };
  const params = specs.map((s) => take(s.name, s.shape));
  const state = shared.state.map((_, k) => specs.map((s) => take(`state${k}.${s.name}`, s.shape)));
  const unexpected = record.params.filter((p) => !expected.has(p.name)).map((p) => p.name);
  if (unexpected.length > 0) {
    throw new Error(
      `${path}: checkpoint holds tensors this run does not have: ${unexpected.map((n) => JSON.stringify(n)).join(", ")}`,
    );
  }
  restoreState(shared, params, state);
  return position;
}

/** Throws naming each setting in which a checkpoint's run differs from this one. */
function checkFingerprint(path: string, saved: unknown, current: Record<string, unknown>): void {
  if (JSON.stringify(saved) === JSON.stringify(current)) return;
  if (typeof saved !== "object" || saved === null || Array.isArray(saved)) {
    throw new Error(`${path}: checkpoint has no valid run description (fingerprint)`);
  }
  const savedRecord = saved as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(savedRecord), ...Object.keys(current)])];
  const differences = keys
    .filter((k) => JSON.stringify(savedRecord[k]) !== JSON.stringify(current[k]))
    .map(
      (k) =>
        `${k}: checkpoint ${JSON.stringify(savedRecord[k]) ?? "(none)"}, this run ${JSON.stringify(current[k]) ?? "(none)"}`,
    );
  throw new Error(
    `${path}: checkpoint was written by a run with other settings; ${differences.join("; ")}`,
  );
}

/** A checkpoint's position, every field checked for type and range against the resuming run. */
function checkPosition(path: string, value: unknown, run: RunShape): Position {
  const fail = (what: string): never => {
    throw new Error(`${path}: corrupt checkpoint position: ${what}`);
  };
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail(`expected an object, got ${JSON.stringify(value)}`);
  }
  const p = value as Record<string, unknown>;
  const keys = ["epoch", "batch", "t", "rngState", "history", "epochLossSum", "epochSamples"];
  for (const key of keys) if (!(key in p)) fail(`${key} is missing`);
  for (const key of Object.keys(p)) if (!keys.includes(key)) fail(`unknown field "${key}"`);
  const integer = (key: string, lo: number, hi: number): number => {
    const v = p[key];
    if (!Number.isSafeInteger(v) || (v as number) < lo || (v as number) > hi) {
      fail(`${key} is ${JSON.stringify(v)}, expected an integer from ${lo} to ${hi}`);
    }
    return v as number;
  };
  const epoch = integer("epoch", 0, Number.MAX_SAFE_INTEGER);
  if (epoch > run.epochs) {
    throw new Error(
      `${path}: checkpoint is at epoch ${epoch}, past this run's ${run.epochs} epochs (--epochs)`,
    );
  }
  const batch = integer("batch", 0, run.batchesPerEpoch - 1);
  const t = integer("t", 0, Number.MAX_SAFE_INTEGER);
  if (t !== epoch * run.batchesPerEpoch + batch) {
    fail(
      `step ${t} does not match epoch ${epoch}, batch ${batch} (${run.batchesPerEpoch} batches per epoch)`,
    );
  }
  integer("epochSamples", batch * run.batchSize, batch * run.batchSize);
  if (
    typeof p.epochLossSum !== "number" ||
    !Number.isFinite(p.epochLossSum) ||
    p.epochLossSum < 0
  ) {
    fail(`epochLossSum is ${JSON.stringify(p.epochLossSum)}, expected a finite sum >= 0`);
  }
  if (batch === 0 && p.epochLossSum !== 0) fail("epochLossSum is not 0 at the start of an epoch");
  try {
    new Rng(1).setState(p.rngState as number[]);
  } catch (error) {
    fail(`rngState: ${(error as Error).message}`);
  }
  const history = p.history;
  if (!Array.isArray(history) || history.length !== epoch) {
    fail(`history must list the ${epoch} completed epochs, got ${JSON.stringify(history)}`);
  }
  (history as unknown[]).forEach((entry, i) => {
    const e = entry as Record<string, unknown> | null;
    const accuracyOk =
      e?.testAccuracy === undefined ||
      (typeof e.testAccuracy === "number" && e.testAccuracy >= 0 && e.testAccuracy <= 1);
    // NaN where the loss was not finite: JSON writes it as null.
    const lossOk =
      e?.testLoss === undefined || e.testLoss === null || typeof e.testLoss === "number";
    const ok =
      typeof e === "object" &&
      e !== null &&
      Object.keys(e).length ===
        2 + (e.testAccuracy === undefined ? 0 : 1) + (e.testLoss === undefined ? 0 : 1) &&
      lossOk &&
      e.epoch === i + 1 &&
      typeof e.trainLoss === "number" &&
      Number.isFinite(e.trainLoss) &&
      accuracyOk;
    if (!ok) fail(`history[${i}] is ${JSON.stringify(entry)}`);
  });
  return p as unknown as Position;
}

/**
 * Takes the checkpoint path for this run: removes temp files a killed writer left, refuses an
 * existing checkpoint unless the run resumes or overwrites it, and holds `path.lock` (created
 * exclusively, with this pid; a dead process's lock is taken over with a notice). Returns the
 * function that releases the lock.
 */
function claimCheckpoint(options: CheckpointSpec): () => void {
  const { path } = options;
  const notice = options.onNotice ?? (() => {});
  const release = acquireLock(path, notice);
  try {
    const removed = removeStaleTempFiles(path);
    if (removed.length > 0) {
      notice(`removed ${removed.length} temp file(s) a killed run left: ${removed.join(", ")}`);
    }
    const exists = existsSync(path);
    if (options.resume && !exists) {
      throw new Error(`checkpoint ${path} does not exist: there is nothing to resume`);
    }
    if (exists && !options.resume && !options.overwrite) {
      throw new Error(
        `checkpoint ${path} already exists: continue it with --resume, or replace it with --overwrite`,
      );
    }
  } catch (error) {
    release();
    throw error;
  }
  return release;
}
