/**
 * The active backend of this thread: ops call `backend()`, never a concrete backend. Kept apart
 * from the Backend interface (backend.ts), which no implementation module has to import back.
 */
import type { Backend } from "./backend.js";
import { jsBackend } from "./kernels/js.js";

let current: Backend = jsBackend;

/** The active backend (the plain-TypeScript reference backend unless another was set). */
export function backend(): Backend {
  return current;
}

/** Makes `b` the active backend for every op in this thread; returns the previous one. */
export function setBackend(b: Backend): Backend {
  const previous = current;
  current = b;
  return previous;
}
