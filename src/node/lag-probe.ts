/**
 * How late a periodic timer fires: the runtime's tick is scheduled for a time, and the lag is how
 * long after it the callback ran. A node whose event loop is busy (a long apply, a heavy read) shows
 * it here before its peers show it as an election.
 */

/** One minute of samples at the fastest tick we allow (1 ms) would be 60,000; at the default 50 ms, 1,200. */
const WINDOW_SAMPLES_MAX = 60_000;
/** Samples not yet collected by /metrics; a scrape every 15 s at 1 ms ticks is 15,000. */
const UNDRAINED_MAX = 20_000;

export interface LagSummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export class LagProbe {
  private readonly at: number[] = [];
  private readonly lag: number[] = [];
  private undrained: number[] = [];
  private latestS = 0;

  constructor(private readonly windowMs = 60_000) {}

  /** Records that a timer due at `dueMs` ran at `nowMs` (monotonic milliseconds). */
  record(dueMs: number, nowMs: number): void {
    const lagS = Math.max(0, nowMs - dueMs) / 1000;
    this.latestS = lagS;
    this.at.push(nowMs);
    this.lag.push(lagS);
    if (this.at.length > WINDOW_SAMPLES_MAX) {
      this.at.shift();
      this.lag.shift();
    }
    this.undrained.push(lagS);
    if (this.undrained.length > UNDRAINED_MAX) this.undrained.shift();
    this.expire(nowMs);
  }

  private expire(nowMs: number): void {
    let cut = 0;
    while (cut < this.at.length && this.at[cut] < nowMs - this.windowMs) cut++;
    if (cut > 0) {
      this.at.splice(0, cut);
      this.lag.splice(0, cut);
    }
  }

  /** Quantiles and maximum of the lags of the last window, in seconds. */
  summary(nowMs: number): LagSummary {
    this.expire(nowMs);
    const sorted = [...this.lag].sort((a, b) => a - b);
    const q = (p: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]);
    return { count: sorted.length, p50: q(0.5), p99: q(0.99), max: sorted.length === 0 ? 0 : sorted[sorted.length - 1] };
  }

  /** How late the latest timer fired, in seconds (0 before the first). */
  latest(): number {
    return this.latestS;
  }

  /** The lags recorded since the last drain. */
  drain(): number[] {
    const out = this.undrained;
    this.undrained = [];
    return out;
  }
}
