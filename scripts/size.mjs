// Line budget (tinygrad's sz.py): code lines (not blank, not comment-only) per folder of src/.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const counts = new Map();
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (/\.ts$/.test(name)) {
      const code = readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => {
          const t = line.trim();
          return t !== "" && !t.startsWith("//") && !t.startsWith("*") && !t.startsWith("/*");
        }).length;
      const folder = relative(root, dir);
      counts.set(folder, (counts.get(folder) ?? 0) + code);
    }
  }
}
for (const top of ["src", "workers", "asm"]) walk(join(root, top));
const check = process.argv.includes("--check");
let total = 0;
if (!check) console.log("| folder | code lines |\n|---|---:|");
for (const [folder, n] of [...counts].sort()) {
  if (!check) console.log(`| ${folder} | ${n} |`);
  total += n;
}
if (!check) console.log(`| total | ${total} |`);

// The budgets (`--check`, which npm test runs, fails past one): code lines per group of folders.
// A budget moves only with a capability, and its history says which.
const BUDGETS = [
  {
    name: "core",
    // What defines, types, runs and differentiates a graph, through the Backend interface, with
    // the reference kernels.
    folders: /^src\/(tensor|graph|autodiff|runtime)(\/|$)/,
    budget: 4275,
    history: [
      "3,297 before the type rules, five new ops, forward mode and jacobian, checkGradients and custom ops, name-keyed feeds and input validation (3,889 after them, 3,726 after a first round of cuts)",
      "3,796 with tracedGradients, the shared byte-order helpers and what the compiled shards read from the wasm backend",
      "2,931 after a restructuring: element-wise ops declared by their kernel and one derivative map, type rules derived from sameAs facts, transpose's adjoint as a transpose, one broadcast check, one cross-entropy row walk, one checked reverse sweep; the WASM backend moved out to src/backends with its own budget (as TF.js keeps tfjs-backend-wasm out of tfjs-core)",
      "3,150 for the checked rule results (a rule's gradients, tangents and compute results checked against the op's type; op.gradient beside pullback; the Evaluator's re-entry guard)",
      "3,250 for the outputs copied out of the wasm arena, the placement scope, the pool's two free lists and the cross-entropy's reduction",
      "3,350 for the option checks of checkGradients, jacobian and the feeds' one rule (feedMap)",
      "3,600 for the first N-D ops (slice and its adjoint, concat and its parts, argmax, stopGradient)",
      "3,700 for batched matmul",
      "4,000 for layerNorm, softmax/logSoftmax as ops and conv2d with its two adjoint ops and kernels",
      "4,100 for maxPool2d and its adjoint pair",
      "4,200 for the typed list of built-in op names (src/graph/op-names.ts, 57 lines) that the registry, the ONNX rules and the compiled step's cases are checked against",
      "4,250 when files over about 400 lines were split by family (js.ts into js, js-matmul, js-reduce, js-nn, js-walk; conv.ts out of nn.ts, slice.ts out of shape.ts): their imports, no capability",
      "4,275 when the walk that types every node by the ops' rules at given shapes moved here (src/graph/concrete.ts, 34 lines), out of the compiled step and fit()'s step cost, which had one each (backends and train shrank by as much)",
    ],
  },
  {
    name: "backends",
    // The WASM backend, its arena and selection by name.
    folders: /^src\/backends(\/|$)/,
    budget: 1775,
    history: [
      "575 until the im2col convolution kernels came",
      "675 until the batched product, the convolution's patches and max-pooling moved into WASM",
      "710 until the per-channel bias and its gradient did; then 750",
      "775 for the WASM op codes defined once (src/backends/wasm-codes.ts, which asm/kernels.ts imports)",
      "1,275 when the wasm backend's training code (the compiled shard and the fused reduce-and-update, 473 lines) moved here from src/train/parallel, into src/backends/wasm-training, behind the TrainingKernels interface (training.ts) that select.ts's trainingKernels() gives train/ without a downcast",
      "1,325 when wasm.ts was split into the engine's API and probes (wasm-module.ts), the arena (wasm-arena.ts) and the image kernels (wasm-image.ts): their imports and signatures, no capability",
      "1,425 for the compiled step's convolution case: conv2d keeps x's patches for its filter gradient (ConvParts in wasm-image.ts, convStep in wasm-training/compiled.ts)",
      "1,500 for the cross-entropy kernels in WASM with their own exp (the wasm backend's softmaxCrossEntropy and its gradient, wasm.ts) and a shard's rows gathered in one WASM call (wasm-training/gather.ts, RowGather in training.ts)",
      "1,550 for the compiled step's shapes from the ops' type rules (typesAt in wasm-training/compiled.ts; the interpreted pass only where a rule leaves a dim unknown)",
      "1,725 for the compiled step's image ops by address (wasm-training/image.ts: conv2d and both adjoints, max-pooling and its gradient, the per-channel bias and its sum, into buffers the program holds, g's rows swapped once for both adjoints; the product by address in held.ts, shared with matmul), replacing the convolution case that went through Tensors and copied each result: 33 Tensors a cnn shard to 3, the tutorial cnn's 32-row shard 18-24% faster",
      "1,760 for the compiled step's stacked and batched products by address (a transformer's: a stack times a weight matrix as one product of its rows, Q K^T and A V on the batched kernel) and reshapes as views of their input's buffer: 71 Tensors a course-transformer shard to 19, its 8-row shard 15% faster",
      "1,775 for giving a run's memory back at its end (WasmArena.release, the compiled program's and the row gather's dispose): fit() called again and again grew the arena by a run's buffers each time until a collection (a conv net's 100 fits: 738 MB of RSS), and now reuses them",
    ],
  },
  {
    name: "train",
    // The built-in models, fit(), the loop, checkpoints and the data-parallel engine.
    folders: /^src\/train(\/|$)/,
    budget: 4600,
    history: [
      "4,900 at its first budget, when train/ was split by job (4,863 then)",
      "4,400 when the wasm backend's training code moved to src/backends/wasm-training (4,393 then)",
      "4,450 for the backend's row gather in the shard runner (made with the run's staging) and a step that allocates nothing for its update (wasmRule fills the runner's constants; the update's arrays built once) (4,418 then)",
      "4,500 for workers started before their run (PrestartedPool in parallel/pool.ts, the run in the loop task): a pool's threads boot while the CLI loads its data (4,477 then)",
      "4,575 for fit()'s auto thread count weighing a step's work (src/train/step-cost.ts: a plan's products and convolutions at the step's shapes), as the CLI's rule does for its models (4,557 then)",
      "4,600 for a shard runner that gives its buffers back when its engine closes (ShardRunner.dispose: programs, gathered rows, staged parameters, column copies), so that fit() called again and again reuses them instead of growing the arena until a collection (4,593 then)",
    ],
  },
];

if (check) {
  const lines = [];
  for (const { name, folders, budget } of BUDGETS) {
    const n = [...counts]
      .filter(([folder]) => folders.test(folder))
      .reduce((sum, [, count]) => sum + count, 0);
    if (n > budget) {
      console.error(
        `size: the ${name} has ${n} code lines, over its budget of ${budget} (scripts/size.mjs: raise it only with a capability, and say which in its history)`,
      );
      process.exit(1);
    }
    lines.push(`${name}: ${n} code lines, budget ${budget}`);
  }
  console.log(lines.join("; "));
}
