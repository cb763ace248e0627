/**
 * How heavy work on the node's thread gives way to Raft. The stream pump's backlogs and long reads
 * (a page of 1,000 entries, 500 records with proofs) run in slices of at most SLICE_MS and yield to
 * the event loop between them, so a tick, a peer message or a request waits at most that long for
 * one of them. The budget is time, not items: an item costs from ~2 µs (a cached frame) to a
 * millisecond (a proof on a cold cache, a slow disk).
 *
 * Yielding with setImmediate is not enough when the machine is short of CPU: several slices run
 * back to back in one turn of the loop, and a thread that never sleeps is the one the kernel makes
 * wait. So while the node's latest tick fired BACKOFF_TICK_LATE_MS late or more, the next slice
 * waits SLICE_MS on a timer instead: heavy work then gets at most about half of the thread, the
 * process sleeps between slices, and the kernel runs the Raft timers on time. An idle machine never
 * sees it, and backlogs go at full speed.
 */
import type { NodeInfo } from "../node/ports";

/** A slice: a 50 ms tick waits at most this long for one; ~2,000 cached frames or ~200 uncached entries. */
export const SLICE_MS = 4;
/** A tick this late means the node is short of CPU (other processes, GC, a slow disk). */
export const BACKOFF_TICK_LATE_MS = 10;

type Clocked = Pick<NodeInfo, "tickLateMs">;

/** Runs `next` as the next slice: on the loop's next turn, or after SLICE_MS while the node's ticks run late. */
export function afterSlice(node: Clocked, next: () => void): void {
  if (node.tickLateMs() >= BACKOFF_TICK_LATE_MS) setTimeout(next, SLICE_MS);
  else setImmediate(next);
}

/** For a loop that builds one answer: `await slicer.pause()` between items; it yields once a slice is used up. */
export class Slicer {
  private started = performance.now();

  constructor(private readonly node: Clocked) {}

  async pause(): Promise<void> {
    if (performance.now() - this.started < SLICE_MS) return;
    await new Promise<void>((resolve) => afterSlice(this.node, resolve));
    this.started = performance.now();
  }
}
