/**
 * Small tmpfs mounts for disk-full tests: a data dir on its own size-limited filesystem, a filler
 * file that takes the free space down to a few bytes (as another program filling the disk would),
 * deleting it to free the space, and an unmount that always runs (lazy as a fallback). Mounting
 * needs root (as in CI); a test that cannot mount fails with a message saying so, it never skips.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** The filler's name, in the mount's root; nothing the node writes is named like this. */
export const FILLER_FILE = ".disk-full-filler";
/** The filler grows in writes of this size: big enough to be quick, small enough for a short last write. */
const FILL_CHUNK_BYTES = 1024 * 1024;
/** A 24 MiB tmpfs is filled in ~24 chunks; this bound only stops a loop on a filesystem that never fills. */
const FILL_WRITES_MAX = 4096;
/** Mounts one test file may hold (3 nodes × a few cases); a leak past it is a bug in the test. */
const MOUNTS_MAX = 16;

const mounted = new Map<string, Tmpfs>();

export interface FillResult {
  /** The filler's size after this fill. */
  readonly fillerBytes: number;
  /** Bytes the filesystem reports free (for an unprivileged writer) after this fill. */
  readonly freeBytes: number;
}

/** `mount` or `umount` run as a process; throws with the command and its stderr when it fails. */
function run(cmd: string, args: readonly string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    const stderr = e.stderr === undefined ? "" : e.stderr.toString("utf8").trim();
    throw new Error(`${cmd} ${args.join(" ")} failed: ${stderr === "" ? e.message : stderr}`);
  }
}

/** True when /proc/self/mounts lists `dir` (a real path) as a mount point now. */
export function isMountPoint(dir: string): boolean {
  const mounts = fs.readFileSync("/proc/self/mounts", "utf8");
  return mounts.split("\n").some((l) => l.split(" ")[1] === dir.replace(/ /g, "\\040"));
}

export class Tmpfs {
  private readonly filler: string;

  readonly dir: string;

  constructor(dir: string, readonly sizeBytes: number) {
    this.dir = fs.realpathSync(dir);
    this.filler = path.join(this.dir, FILLER_FILE);
  }

  /** Bytes free on the mount now (statfs: available blocks × block size). */
  freeBytes(): number {
    const s = fs.statfsSync(this.dir);
    return s.bavail * s.bsize;
  }

  /** The filler's size now; 0 when there is none. */
  fillerBytes(): number {
    return fs.existsSync(this.filler) ? fs.statSync(this.filler).size : 0;
  }

  /**
   * Grows the filler until at most `leaveBytes` are free (another process writing at the same time
   * only helps). A write refused with ENOSPC means the disk is full: that is the goal, not an error.
   * Can be called again to top the filler up after space was freed.
   */
  fill(leaveBytes: number): FillResult {
    const chunk = Buffer.alloc(FILL_CHUNK_BYTES, 0x5a);
    const fd = fs.openSync(this.filler, "a", 0o600);
    try {
      for (let i = 0; i < FILL_WRITES_MAX; i++) {
        const want = this.freeBytes() - leaveBytes;
        if (want <= 0) break;
        try {
          fs.writeSync(fd, chunk, 0, Math.min(want, chunk.length));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw err;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    const result = { fillerBytes: this.fillerBytes(), freeBytes: this.freeBytes() };
    if (result.freeBytes > leaveBytes) {
      throw new Error(`${this.dir}: filled with ${result.fillerBytes} bytes but ${result.freeBytes} bytes are still free (wanted <= ${leaveBytes})`);
    }
    return result;
  }

  /** Deletes the filler: the space it held is free again. */
  free(): void {
    fs.rmSync(this.filler, { force: true });
  }

  /**
   * Copies what the mount holds (without the filler) to `to` on the real disk, for a post-mortem:
   * the mount's contents are gone once it is unmounted.
   */
  preserve(to: string): void {
    fs.cpSync(this.dir, to, { recursive: true, filter: (src) => path.basename(src) !== FILLER_FILE });
  }

  /** Unmounts; a busy mount (a process still holds a file) is detached lazily (umount -l) instead. */
  unmount(): void {
    if (!mounted.has(this.dir)) return;
    mounted.delete(this.dir);
    if (!isMountPoint(this.dir)) return;
    try {
      run("umount", [this.dir]);
    } catch (err) {
      process.stderr.write(`[tmpfs] ${(err as Error).message}; detaching lazily (umount -l)\n`);
      run("umount", ["-l", this.dir]);
    }
  }
}

/**
 * Mounts a fresh tmpfs of `sizeBytes` on the existing, empty dir `dir`. Throws, with what to do,
 * when the mount is refused (most often: not root).
 */
export function mountTmpfs(dir: string, sizeBytes: number): Tmpfs {
  if (mounted.size >= MOUNTS_MAX) throw new Error(`more than ${MOUNTS_MAX} tmpfs mounts at once: unmount the ones a test is done with`);
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 1024 * 1024) throw new Error(`tmpfs size ${sizeBytes}: at least 1 MiB`);
  if (fs.readdirSync(dir).length > 0) throw new Error(`${dir} is not empty: mounting over it would hide its files`);
  const uid = typeof process.getuid === "function" ? process.getuid() : -1;
  try {
    run("mount", ["-t", "tmpfs", "-o", `size=${sizeBytes},mode=0700`, "tmpfs", dir]);
  } catch (err) {
    throw new Error(
      `cannot mount a ${sizeBytes}-byte tmpfs on ${dir} (uid ${uid}): ${(err as Error).message}. ` +
        `The disk-full tests need root (or CAP_SYS_ADMIN) to mount a small filesystem they can fill; run them as root, as CI does.`,
    );
  }
  const t = new Tmpfs(dir, sizeBytes);
  mounted.set(t.dir, t);
  return t;
}

/**
 * Puts an existing dir on its own tmpfs at the same path: its files are moved aside, the tmpfs is
 * mounted on the (now empty) dir, and the files are copied in with their modes.
 */
export function moveOntoTmpfs(dir: string, sizeBytes: number): Tmpfs {
  const aside = `${dir}.on-disk`;
  fs.renameSync(dir, aside);
  fs.mkdirSync(dir, { mode: 0o700 });
  let t: Tmpfs;
  try {
    t = mountTmpfs(dir, sizeBytes);
  } catch (err) {
    fs.rmdirSync(dir);
    fs.renameSync(aside, dir);
    throw err;
  }
  fs.cpSync(aside, dir, { recursive: true, preserveTimestamps: true });
  for (const name of fs.readdirSync(aside)) fs.chmodSync(path.join(dir, name), fs.statSync(path.join(aside, name)).mode & 0o7777);
  fs.rmSync(aside, { recursive: true, force: true });
  return t;
}

/**
 * Unmounts every tmpfs this process mounted, each one tried even when another fails; throws once
 * at the end naming every failure. For afterAll, before the temp dirs under them are removed.
 */
export function unmountAll(): void {
  const failures: string[] = [];
  for (const t of [...mounted.values()]) {
    try {
      t.unmount();
    } catch (err) {
      failures.push((err as Error).message);
    }
  }
  if (failures.length > 0) throw new Error(`tmpfs unmount failed:\n  ${failures.join("\n  ")}`);
}
