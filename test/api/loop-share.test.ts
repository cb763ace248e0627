// src/api/loop-share.ts: heavy work on the node's thread yields between slices of SLICE_MS; while the
// node's ticks fire BACKOFF_TICK_LATE_MS late or more, the next slice waits on a timer (the thread
// sleeps), otherwise it takes the loop's next turn. Jest's modern fake timers drive both setImmediate
// and setTimeout, and performance.now, so each case is exact.
import { afterSlice, BACKOFF_TICK_LATE_MS, SLICE_MS, Slicer } from "../../src/api/loop-share";

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

const late = (ms: number) => ({ tickLateMs: () => ms });

describe("afterSlice", () => {
  test("ticks on time: the next slice runs on the loop's next turn, before any timer", () => {
    const ran: string[] = [];
    afterSlice(late(BACKOFF_TICK_LATE_MS - 0.001), () => ran.push("slice"));
    expect(ran).toEqual([]);
    jest.advanceTimersByTime(0); // no time passes: an immediate, not a timer
    expect(ran).toEqual(["slice"]);
  });

  test("ticks late: the next slice waits SLICE_MS on a timer", () => {
    const ran: string[] = [];
    afterSlice(late(BACKOFF_TICK_LATE_MS), () => ran.push("slice"));
    jest.advanceTimersByTime(SLICE_MS - 1);
    expect(ran).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(ran).toEqual(["slice"]);
  });
});

describe("Slicer", () => {
  test("pause returns at once while the slice has time left, and yields once it is used up", async () => {
    const s = new Slicer(late(0));
    let resumed = false;
    await s.pause(); // a fresh slice: no yield
    jest.advanceTimersByTime(SLICE_MS); // the work of one slice
    const p = s.pause().then(() => {
      resumed = true;
    });
    await Promise.resolve();
    expect(resumed).toBe(false);
    jest.advanceTimersByTime(0);
    await p;
    expect(resumed).toBe(true);
    // a new slice starts after the yield
    jest.advanceTimersByTime(SLICE_MS - 1);
    let again = false;
    await s.pause().then(() => {
      again = true;
    });
    expect(again).toBe(true);
  });

  test("while ticks run late the yield is a SLICE_MS sleep", async () => {
    const s = new Slicer(late(25));
    jest.advanceTimersByTime(SLICE_MS);
    let resumed = false;
    const p = s.pause().then(() => {
      resumed = true;
    });
    await jest.advanceTimersByTimeAsync(SLICE_MS - 1);
    expect(resumed).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    await p;
    expect(resumed).toBe(true);
  });
});
