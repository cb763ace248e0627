/**
 * How heavy work on the node's thread gives way to Raft. The stream pump's backlogs and long reads
 * (a page of 1,000 entries, 500 records with proofs) run in slices of at most SLICE_MS and yield to
 * the event loop between them. The budget is time, not items: an item costs from ~2 µs (a cached
 * frame) to a millisecond (a proof on a cold cache, a slow disk).
 *
 * A tick never waits for heavy work to finish a slice:
 *   - a slice ends as soon as the next tick is due;
 *   - a slice does not start when the tick is due before it could end: it waits for the tick.
 * Without that, several slices (the pump, each reader) ran back to back in one turn of the loop
 * while a due tick waited behind them all.
 *
 * And while the node's latest tick fired BACKOFF_TICK_LATE_MS late or more (the machine is short of
 * CPU: other processes, GC, a slow disk), the next slice waits SLICE_MS first: heavy work then
 * gets at most about half of the thread, and the process sleeps between slices, which is what lets
 * the kernel run its timers on time. An idle machine never sees it, and backlogs go at full speed.
 *
 * A wait is a timer whose callback only queues the slice with setImmediate: a slice never runs in
 * the loop's timers phase, where slices due at the same time as a tick could go ahead of it.
 */
import type { NodeInfo } from "../node/ports";

/** A slice: ~2,000 cached frames or ~200 uncached entries; a request or a peer message waits at most this long for one. */
export const SLICE_MS = 4;
/** A tick this late means the node is short of CPU. */
export const BACKOFF_TICK_LATE_MS = 10;

export type Clocked = Pick<NodeInfo, "tickLateMs" | "tickDueInMs">;

/** Whether a slice that started at `started` (performance.now()) may go on: it has time left and no tick is due. */
export function sliceMayGoOn(node: Clocked, started: number): boolean {
  return performance.now() - started < SLICE_MS && node.tickDueInMs() > 0;
}

/** How long the next slice waits before it starts (ms). */
export function waitBeforeSlice(node: Clocked): number {
  const due = node.tickDueInMs();
  // The tick first: it would be due before the slice could end. Its timer expires before this
  // wait's, so the loop runs it first; +1 ms because timers have millisecond resolution.
  if (due < SLICE_MS) return Math.max(due, 0) + 1;
  return node.tickLateMs() >= BACKOFF_TICK_LATE_MS ? SLICE_MS : 0;
}

/** Runs `next` as the next slice, after waitBeforeSlice. */
export function afterSlice(node: Clocked, next: () => void): void {
  const wait = waitBeforeSlice(node);
  if (wait === 0) setImmediate(next);
  else setTimeout(() => setImmediate(next), wait);
}

/** For a loop that builds one answer: `await slicer.pause()` between items; it yields when the slice is over. */
export class Slicer {
  private started = performance.now();

  constructor(private readonly node: Clocked) {}

  async pause(): Promise<void> {
    if (sliceMayGoOn(this.node, this.started)) return;
    await new Promise<void>((resolve) => afterSlice(this.node, resolve));
    this.started = performance.now();
  }
}
