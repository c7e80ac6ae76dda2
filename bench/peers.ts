/**
 * The peers bench:train and bench:profile run beside adjoint: TensorFlow.js (cpu, wasm) and jax-js
 * (wasm) in this process, their packages devDependencies; PyTorch and NumPy through the scripts
 * in ../shared/peers/ (see its README) where python3 and the packages are present. Each returns
 * a step function (timed by the caller) or a reason it could not run.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { packageRoot } from "../src/package.js";

/** One fixed training batch for an MLP peer: layer sizes, rows, labels, SGD learning rate. */
export interface PeerBatch {
  sizes: readonly number[];
  X: Float32Array;
  y: Int32Array;
  lr: number;
}

// NOTE: TF.js is an optional peer: the types are declared locally (only what the step uses) and
// the modules are imported dynamically, so the bench runs, minus that row, where it is absent.
interface TfTensor {
  dispose(): void;
}
export interface TfApi {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  tidy<T>(fn: () => T): T;
  variable(t: TfTensor): TfTensor;
  randomNormal(shape: number[], mean?: number, std?: number): TfTensor;
  zeros(shape: number[]): TfTensor;
  tensor2d(values: Float32Array, shape: [number, number]): TfTensor;
  oneHot(indices: TfTensor, depth: number): TfTensor;
  tensor1d(values: Int32Array, dtype: "int32"): TfTensor;
  matMul(a: TfTensor, b: TfTensor): TfTensor;
  add(a: TfTensor, b: TfTensor): TfTensor;
  relu(x: TfTensor): TfTensor;
  losses: { softmaxCrossEntropy(labels: TfTensor, logits: TfTensor): TfTensor };
  train: {
    sgd(lr: number): {
      minimize(f: () => TfTensor, returnCost?: boolean): TfTensor | null;
    };
  };
}

/** The tfjs-core module with the cpu and wasm backends registered, or why it could not load. */
export async function loadTf(): Promise<TfApi | string> {
  try {
    // NOTE: the umbrella @tensorflow/tfjs, not tfjs-core alone: tfjs-core's CommonJS bundle has no
    // gradient functions, and its ESM register_all_gradients.js uses extensionless imports that
    // Node's ESM loader rejects. The node entry points are CommonJS, so require them.
    const { createRequire } = await import("node:module");
    const { dirname } = await import("node:path");
    const require = createRequire(import.meta.url);
    const tf = require("@tensorflow/tfjs") as TfApi;
    const wasm = require("@tensorflow/tfjs-backend-wasm") as { setWasmPaths(prefix: string): void };
    // The .wasm binaries ship next to the package's main file (dist/).
    wasm.setWasmPaths(`${dirname(require.resolve("@tensorflow/tfjs-backend-wasm"))}/`);
    return tf;
  } catch (error) {
    return `TF.js not measured: ${(error as Error).message.split("\n")[0]}`;
  }
}

/** A TF.js step of `b`'s MLP on `backendName`: tf.train.sgd minimize (variableGrads + update). */
export async function tfStep(
  tf: TfApi,
  backendName: string,
  b: PeerBatch,
): Promise<() => Promise<void>> {
  if (!(await tf.setBackend(backendName))) throw new Error(`backend ${backendName} did not start`);
  await tf.ready();
  const sizes = b.sizes;
  const rows = b.y.length;
  const params = sizes
    .slice(1)
    .flatMap((out, l) => [
      tf.variable(tf.randomNormal([sizes[l], out], 0, Math.sqrt(2 / sizes[l]))),
      tf.variable(tf.zeros([out])),
    ]);
  const X = tf.tensor2d(b.X, [rows, sizes[0]]);
  const Y = tf.tidy(() => tf.oneHot(tf.tensor1d(b.y, "int32"), sizes[sizes.length - 1]));
  const optimizer = tf.train.sgd(b.lr);
  const loss = () => {
    let h = X;
    for (let l = 0; l < sizes.length - 1; l++) {
      const z = tf.add(tf.matMul(h, params[2 * l]), params[2 * l + 1]);
      h = l < sizes.length - 2 ? tf.relu(z) : z;
    }
    return tf.losses.softmaxCrossEntropy(Y, h);
  };
  const step = async (): Promise<void> => {
    tf.tidy(() => {
      optimizer.minimize(loss);
    });
  };
  for (let i = 0; i < 3; i++) await step();
  return step;
}

// NOTE: jax-js's types are declared locally too (only what the step uses).
interface JaxArray {
  ref: JaxArray;
  add(x: JaxArray | number): JaxArray;
  sub(x: JaxArray): JaxArray;
  mul(x: JaxArray | number): JaxArray;
  sum(): JaxArray;
  jsAsync(): Promise<unknown>;
}
type JaxParams = Record<string, JaxArray>;
interface JaxApi {
  init(device: string): Promise<unknown>;
  defaultDevice(device: string): void;
  numpy: {
    array(
      data: Float32Array | Int32Array,
      options: { shape?: number[]; dtype?: unknown },
    ): JaxArray;
    zeros(shape: number[]): JaxArray;
    dot(a: JaxArray, b: JaxArray): JaxArray;
    int32: unknown;
  };
  nn: {
    relu(x: JaxArray): JaxArray;
    logSoftmax(x: JaxArray): JaxArray;
    oneHot(x: JaxArray, classes: number): JaxArray;
  };
  random: {
    key(seed: number): JaxArray;
    split(key: JaxArray, n: number): JaxArray[];
    normal(key: JaxArray, shape: number[]): JaxArray;
  };
  jit<F>(f: F): F;
  valueAndGrad<F>(f: F): (...args: unknown[]) => [JaxArray, JaxParams];
  tree: {
    ref(p: JaxParams): JaxParams;
    map(f: (a: JaxArray, b: JaxArray) => JaxArray, p: JaxParams, g: JaxParams): JaxParams;
  };
}

/** @jax-js/jax on its wasm device, or why it could not load. */
export async function loadJax(): Promise<JaxApi | string> {
  try {
    const jax = createRequire(import.meta.url)("@jax-js/jax") as JaxApi;
    await jax.init("wasm");
    jax.defaultDevice("wasm");
    return jax;
  } catch (error) {
    return `jax-js not measured: ${(error as Error).message.split("\n")[0]}`;
  }
}

/**
 * A jax-js step of `b`'s one-hidden-layer MLP: `jit` of valueAndGrad plus the SGD update (the
 * library's documented training pattern), awaiting the loss so the step has finished. The first
 * call compiles; `steps(n)` runs n steps.
 */
export function jaxSteps(jax: JaxApi, b: PeerBatch): (n: number) => Promise<void> {
  const { numpy: np, nn } = jax;
  const [F, H, K] = b.sizes;
  const rows = b.y.length;
  const [k1, k2] = jax.random.split(jax.random.key(0), 2);
  let params: JaxParams = {
    w1: jax.random.normal(k1, [F, H]).mul(0.05),
    b1: np.zeros([H]),
    w2: jax.random.normal(k2, [H, K]).mul(0.05),
    b2: np.zeros([K]),
  };
  const loss = (p: JaxParams, x: JaxArray, y: JaxArray) => {
    const h = nn.relu(np.dot(x, p.w1).add(p.b1));
    return nn
      .logSoftmax(np.dot(h, p.w2).add(p.b2))
      .mul(y)
      .sum()
      .mul(-1 / rows);
  };
  const step = jax.jit((p: JaxParams, x: JaxArray, y: JaxArray): [JaxArray, JaxParams] => {
    const [l, g] = jax.valueAndGrad(loss)(jax.tree.ref(p), x, y);
    return [l, jax.tree.map((a, d) => a.sub(d.mul(b.lr)), p, g)];
  });
  const x = np.array(b.X, { shape: [rows, F] });
  const y = nn.oneHot(np.array(b.y, { dtype: np.int32 }), K);
  return async (n: number) => {
    for (let i = 0; i < n; i++) {
      const [l, next] = step(params, x.ref, y.ref);
      await l.jsAsync();
      params = next;
    }
  };
}

/** A figure a peer printed (one JSON line per peer), or why there is none. */
export interface PeerFigure {
  peer: string;
  samplesPerSecond?: number;
  /** A kernel peer's case label and GFLOP/s (bench/peers/kernels_torch.py). */
  case?: string;
  gflops?: number;
  error?: string;
}

/**
 * Runs ../shared/peers/`script` (or this package's own `bench/peers/` script when `script` starts
 * with "bench/") with `$PEERS_PYTHON` (default python3; e.g. the venv the peers'
 * README sets up: `PEERS_PYTHON=/tmp/peers-venv/bin/python npm run bench:train`) and returns the
 * JSON lines it printed; a missing python, script or package becomes a figure with an error.
 */
export function pythonPeers(script: string, args: string[], peer: string): PeerFigure[] {
  const path = script.startsWith("bench/")
    ? join(packageRoot(), script)
    : join(packageRoot(), "..", "shared", "peers", script);
  if (!existsSync(path)) return [{ peer, error: `${path} not found` }];
  try {
    const out = execFileSync(process.env.PEERS_PYTHON ?? "python3", [path, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    return out
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as PeerFigure);
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? "");
    const reason =
      /No module named '(\w+)'/.exec(stderr)?.[0] ?? (error as Error).message.split("\n")[0];
    return [{ peer, error: reason }];
  }
}

/**
 * Runs ../shared/peers/`script` (a JS peer) with this Node in this package's root, where its
 * packages (devDependencies) resolve; the JSON line it printed, or why there is none.
 */
export function nodePeer(script: string, args: string[], peer: string): PeerFigure {
  const path = join(packageRoot(), "..", "shared", "peers", script);
  if (!existsSync(path)) return { peer, error: `${path} not found` };
  try {
    const out = execFileSync(process.execPath, [path, ...args], {
      cwd: packageRoot(),
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    const line = out.split("\n").find((l) => l.startsWith("{"));
    if (line === undefined) return { peer, error: "printed no JSON line" };
    return { ...(JSON.parse(line) as PeerFigure), peer };
  } catch (error) {
    return { peer, error: (error as Error).message.split("\n")[0] };
  }
}
