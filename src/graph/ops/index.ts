/** Every op module, imported for its registrations: what a worker needs to rebuild any plan. */
export * from "./elementwise.js";
export * from "./matmul.js";
export * from "./reduce.js";
export * from "./shape.js";
export * from "./nn.js";
