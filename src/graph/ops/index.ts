/** Every op module, imported for its registrations: what a worker needs to rebuild any plan. */
export * from "./elementwise.js";
export * from "./matmul.js";
export * from "./reduce.js";
export * from "./shape.js";
export * from "./nn.js";
export * from "./conv.js";
export * from "./slice.js";

import { BUILTIN_OP_NAMES } from "../op-names.js";
import "../node.js"; // the placeholder op
import "../fluent.js"; // x.add(y) and the other methods of Node

/** The ops every thread has (registered by these modules): what a worker can rebuild. */
export const BUILTIN_OPS: ReadonlySet<string> = new Set(BUILTIN_OP_NAMES);
