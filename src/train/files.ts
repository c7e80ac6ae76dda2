/**
 * Files that never lose data: atomic writes (temp file in the same directory, fsync, rename),
 * output paths checked before any training, regular files only, and locks (with the processes
 * behind them).
 */
import { randomBytes } from "node:crypto";
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  existsSync,
  fstatSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * Writes `data` to `path` so that readers see either the old file or the whole new one: it goes
 * to `${path}.tmp-${pid}-${random}` in the same directory, is fsynced, then renamed over `path`.
 * On any failure (including an iterable of chunks that throws) the temp file is removed and the
 * error names `path` (the old file, if any, is unchanged).
 * Example: `writeFileAtomic("ckpt.bin", bytes)`.
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array | Iterable<Uint8Array>,
): void {
  const dir = dirname(path);
  refuseNonRegularTarget(path);
  const tempPath = join(
    dir,
    `${basename(path)}${TEMP_INFIX}${process.pid}-${randomBytes(6).toString("hex")}`,
  );
  let fd: number | undefined;
  try {
    fd = openSync(tempPath, "wx", 0o644);
    const chunks = typeof data === "string" || data instanceof Uint8Array ? [data] : data;
    for (const chunk of chunks) {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
      let written = 0;
      while (written < bytes.length) {
        written += writeSync(fd, bytes, written, bytes.length - written);
      }
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tempPath, path);
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // Already failing; the original error is the one to report.
      }
    }
    try {
      unlinkSync(tempPath);
    } catch {
      // The temp file may never have been created.
    }
    throw writeError(path, err);
  }
  // Persist the rename itself; some platforms cannot fsync a directory, which is not an error.
  try {
    const dirFd = openSync(dir, "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch {
    // Best effort only.
  }
}

/** What writeFileAtomic's temp files put between the target's name and the writer's pid. */
const TEMP_INFIX = ".tmp-";

/** The error of a failed write, naming the target path and keeping the system error's code. */
function writeError(path: string, err: unknown): Error {
  const cause = err as NodeJS.ErrnoException;
  const reasons: Record<string, string> = {
    ENOSPC: "no space left on the device",
    EDQUOT: "the disk quota is exhausted",
    EROFS: "the file system is read-only",
    EACCES: "permission denied",
    EPERM: "operation not permitted",
  };
  const reason = cause?.code !== undefined ? reasons[cause.code] : undefined;
  const detail = reason ? `${reason} (${cause.code})` : String(cause?.message ?? cause);
  const error = new Error(
    `cannot write ${path}: ${detail}; the previous file, if any, is unchanged`,
    {
      cause: err,
    },
  ) as NodeJS.ErrnoException;
  if (cause?.code !== undefined) error.code = cause.code;
  return error;
}

/**
 * Removes the temp files (`path.tmp-PID-*`) that a writer killed mid-write left beside `path`,
 * those of processes no longer running; returns their names.
 */
export function removeStaleTempFiles(path: string): string[] {
  const dir = dirname(path);
  const prefix = `${basename(path)}${TEMP_INFIX}`;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const entry of entries) {
    if (!entry.startsWith(prefix)) continue;
    const match = /^(\d+)-[0-9a-f]{12}$/.exec(entry.slice(prefix.length));
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    try {
      unlinkSync(join(dir, entry));
      removed.push(entry);
    } catch {
      // Gone already, or not ours to remove: leave it.
    }
  }
  return removed;
}

/** Whether a process with this pid is running (signal 0 probes without signalling). */
export function processAlive(pid: number, startTime?: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  // On Linux, /proc tells a zombie (killed, not yet reaped: dead) and a reused pid (another
  // start time than the lock's owner had) from the live owner.
  const stat = processStat(pid);
  if (stat === undefined) return true;
  if (stat.state === "Z" || stat.state === "X") return false;
  return startTime === undefined || stat.startTime === startTime;
}

/** The state letter and start time (clock ticks after boot) of `pid` from /proc; undefined elsewhere. */
export function processStat(pid: number): { state: string; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0], startTime: fields[19] };
}

/**
 * Why `path` cannot be written as an output file (empty, a directory or another non-regular
 * file, a missing or non-directory parent, a read-only or unwritable directory); undefined when
 * it can. Checked before training, so nothing is lost after it. Example: `outputPathProblem("")`.
 */
export function outputPathProblem(path: string): string | undefined {
  if (path === "") return "is empty: give a file name";
  const kind = nonRegularKind(path);
  if (kind !== undefined) return `is ${kind}, not a regular file`;
  const dir = dirname(path);
  if (!existsSync(dir)) return `the directory ${dir} does not exist`;
  if (!statSync(dir).isDirectory()) return `${dir} is not a directory`;
  try {
    accessSync(dir, fsConstants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "EROFS" ? "the file system is read-only" : "permission denied";
    return `cannot write in ${dir}: ${why} (${code})`;
  }
  return undefined;
}

/**
 * Refuses to write over anything but a regular file: renaming a temp file over a device node
 * (`--save /dev/full` as root), a directory or a FIFO would replace it.
 */
export function refuseNonRegularTarget(path: string): void {
  const kind = nonRegularKind(path);
  if (kind !== undefined) {
    throw new Error(`refusing to write ${path}: it is ${kind}, not a regular file`);
  }
}

/** What stands at `path` when it is not a regular file (undefined: a file, or nothing yet). */
function nonRegularKind(path: string): string | undefined {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    return undefined; // nothing there yet
  }
  return stat.isFile() ? undefined : fileKind(stat);
}

/**
 * The bytes of `path` when it is a regular file (a device such as /dev/zero, a FIFO or a
 * directory is refused before it is opened for reading), read to the size fstat reports.
 */
export function readRegularFile(path: string, fail: (what: string) => never): Buffer {
  let fd: number | undefined;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) {
      fail(`not a regular file (${fileKind(stat)}): parameter files are ordinary files`);
    }
    fd = openSync(path, "r");
    const size = fstatSync(fd).size;
    const file = Buffer.alloc(size);
    let read = 0;
    while (read < size) {
      const n = readSync(fd, file, read, size - read, read);
      if (n === 0) break;
      read += n;
    }
    return read === size ? file : file.subarray(0, read);
  } catch (err) {
    if ((err as Error).message?.startsWith(`loadParams(`)) throw err;
    return fail(`cannot read the file: ${(err as Error).message}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A file system entry's kind in words, for refusals: "a directory", "a character device". */
function fileKind(stat: Stats): string {
  if (stat.isDirectory()) return "a directory";
  if (stat.isFIFO()) return "a FIFO";
  if (stat.isCharacterDevice()) return "a character device";
  if (stat.isBlockDevice()) return "a block device";
  if (stat.isSocket()) return "a socket";
  return "not a plain file";
}

/** Creates `path.lock` exclusively with this pid; returns the function that removes it. */
export function acquireLock(path: string, notice: (line: string) => void = () => {}): () => void {
  const lockPath = `${path}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(lockPath, "wx", 0o644);
      try {
        // The owner's start time beside its pid: a reused pid is not mistaken for the owner.
        const started = processStat(process.pid)?.startTime;
        writeSync(fd, started === undefined ? `${process.pid}\n` : `${process.pid} ${started}\n`);
      } finally {
        closeSync(fd);
      }
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EEXIST" || attempt > 0) {
        throw new Error(`cannot lock ${path}: ${(error as Error).message}`, { cause: error });
      }
      let text = "";
      try {
        text = readFileSync(lockPath, "utf8");
      } catch {
        // Removed in between: try again.
      }
      const match = /^(\d+)(?: (\d+))?\n?$/.exec(text);
      const pid = match ? Number(match[1]) : undefined;
      if (pid !== undefined && pid !== process.pid && processAlive(pid, match?.[2])) {
        throw new Error(
          `checkpoint ${path} is in use by process ${pid} (lock file ${lockPath}); wait for that run to end or choose another --checkpoint`,
          { cause: error },
        );
      }
      if (pid === process.pid) {
        throw new Error(`checkpoint ${path} is already in use by another run in this process`, {
          cause: error,
        });
      }
      notice(
        `taking over the stale lock ${lockPath} (${pid === undefined ? "unreadable" : `process ${pid} is not running`})`,
      );
      rmSync(lockPath, { force: true });
    }
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      rmSync(lockPath, { force: true });
    } catch (error) {
      // NOTE: never thrown: a release runs in `finally` after a failure (a directory made
      // read-only mid-run), and the error to report is that failure, not this one. The lock
      // names this pid, so the next run takes it over once this process is gone.
      notice(`could not remove the lock ${lockPath}: ${(error as Error).message}`);
    }
  };
}
