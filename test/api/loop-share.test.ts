// src/api/loop-share.ts: heavy work on the node's thread runs in slices that a Raft tick never waits
// for. A slice ends when the tick is due, the next one waits for a tick due before it could end,
// and while ticks fire late the next slice first waits SLICE_MS on a timer. Jest's modern fake
// timers drive setTimeout, setImmediate and performance.now, so each case is exact.
import { afterSlice, BACKOFF_TICK_LATE_MS, SLICE_MS, sliceMayGoOn, Slicer, waitBeforeSlice } from "../../src/api/loop-share";

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

/** A node whose next tick is due at `dueAt` (performance.now() time) and whose latest tick was `lateMs` late. */
function clock(o: { dueInMs: number; lateMs?: number }) {
  const state = { dueAt: performance.now() + o.dueInMs, lateMs: o.lateMs ?? 0 };
  return { state, node: { tickDueInMs: () => state.dueAt - performance.now(), tickLateMs: () => state.lateMs } };
}

describe("waitBeforeSlice", () => {
  test("a tick far off and on time: no wait", () => {
    expect(waitBeforeSlice(clock({ dueInMs: 40 }).node)).toBe(0);
    expect(waitBeforeSlice(clock({ dueInMs: SLICE_MS }).node)).toBe(0);
    expect(waitBeforeSlice(clock({ dueInMs: Number.POSITIVE_INFINITY }).node)).toBe(0);
  });

  test("a tick due before the slice could end: wait until just after it", () => {
    expect(waitBeforeSlice(clock({ dueInMs: 2.5 }).node)).toBe(3.5);
    expect(waitBeforeSlice(clock({ dueInMs: 0 }).node)).toBe(1);
    expect(waitBeforeSlice(clock({ dueInMs: -7 }).node)).toBe(1); // overdue: its timer has not run yet
  });

  test("ticks firing late: SLICE_MS, from BACKOFF_TICK_LATE_MS on", () => {
    expect(waitBeforeSlice(clock({ dueInMs: 40, lateMs: BACKOFF_TICK_LATE_MS - 0.001 }).node)).toBe(0);
    expect(waitBeforeSlice(clock({ dueInMs: 40, lateMs: BACKOFF_TICK_LATE_MS }).node)).toBe(SLICE_MS);
  });
});

describe("afterSlice", () => {
  test("no wait: the loop's next turn, no time passing", () => {
    const ran: string[] = [];
    afterSlice(clock({ dueInMs: 40 }).node, () => ran.push("slice"));
    expect(ran).toEqual([]);
    jest.advanceTimersByTime(0);
    expect(ran).toEqual(["slice"]);
  });

  test("a tick due in 2.5 ms runs first; the slice after it", () => {
    const ran: string[] = [];
    const { node } = clock({ dueInMs: 2.5 });
    setTimeout(() => ran.push("tick"), 2.5);
    afterSlice(node, () => ran.push("slice"));
    jest.advanceTimersByTime(3);
    expect(ran).toEqual(["tick"]);
    jest.advanceTimersByTime(1);
    expect(ran).toEqual(["tick", "slice"]);
  });

  test("ticks late: the slice waits SLICE_MS", () => {
    const ran: string[] = [];
    afterSlice(clock({ dueInMs: 40, lateMs: 25 }).node, () => ran.push("slice"));
    jest.advanceTimersByTime(SLICE_MS - 1);
    expect(ran).toEqual([]);
    jest.advanceTimersByTime(2); // the timer at SLICE_MS, then the immediate it queued
    expect(ran).toEqual(["slice"]);
  });
});

describe("a slice ends when its time is up or a tick is due", () => {
  test("sliceMayGoOn", () => {
    const { node, state } = clock({ dueInMs: 40 });
    const started = performance.now();
    expect(sliceMayGoOn(node, started)).toBe(true);
    jest.advanceTimersByTime(SLICE_MS - 1);
    expect(sliceMayGoOn(node, started)).toBe(true);
    state.dueAt = performance.now(); // the tick is due now
    expect(sliceMayGoOn(node, started)).toBe(false);
    state.dueAt = performance.now() + 40;
    jest.advanceTimersByTime(1);
    expect(sliceMayGoOn(node, started)).toBe(false); // SLICE_MS used
  });

  test("Slicer.pause returns at once inside a slice, and yields when a tick comes due", async () => {
    const { node, state } = clock({ dueInMs: 40 });
    const s = new Slicer(node);
    await s.pause();
    jest.advanceTimersByTime(1);
    await s.pause();
    state.dueAt = performance.now() + 0.5;
    jest.advanceTimersByTime(0.5);
    let resumed = false;
    const p = s.pause().then(() => {
      resumed = true;
    });
    await jest.advanceTimersByTimeAsync(0.9);
    expect(resumed).toBe(false); // waits for the tick (+1 ms)
    state.dueAt = performance.now() + 50; // the tick fired and the next is 50 ms away
    await jest.advanceTimersByTimeAsync(1);
    await p;
    expect(resumed).toBe(true);
  });

  test("Slicer.pause yields after SLICE_MS of work, and a new slice starts after the yield", async () => {
    const { node } = clock({ dueInMs: 1000 });
    const s = new Slicer(node);
    jest.advanceTimersByTime(SLICE_MS);
    let resumed = false;
    const p = s.pause().then(() => {
      resumed = true;
    });
    await Promise.resolve();
    expect(resumed).toBe(false);
    jest.advanceTimersByTime(0);
    await p;
    expect(resumed).toBe(true);
    jest.advanceTimersByTime(SLICE_MS - 1);
    let again = false;
    await s.pause().then(() => {
      again = true;
    });
    expect(again).toBe(true);
  });
});
