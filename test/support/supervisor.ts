/**
 * A supervisor for one node process, as systemd runs contrib/resonetics@.service
 * (Restart=on-failure, RestartSec, RestartPreventExitStatus): when the process ends with a non-zero
 * code or an unexpected signal it is started again after a delay, the same way (the caller's start
 * function, e.g. `() => cluster.startNode(id)`), a bounded number of times. Every run is recorded:
 * whether it listened, how it ended. stop() ends the process and the supervision.
 */
import { ExitedBeforeListening, ExitStatus, Server, pollUntil } from "./server";

export interface SupervisorOptions {
  /** For messages: which node this is. */
  readonly name: string;
  /** Starts the process and resolves once it listens (startServer / TestCluster.startNode). */
  readonly start: () => Promise<Server>;
  /** systemd's RestartSec: the pause between an exit and the next start. */
  readonly restartDelayMs: number;
  /** Restarts after the first start; past it the supervisor gives up (a test must end). */
  readonly restartsMax: number;
  /** systemd's RestartPreventExitStatus: exit codes that need an operator, never restarted. */
  readonly preventRestartExitCodes?: readonly number[];
  /** A process already started with `start`: the first run supervises it instead of starting one. */
  readonly adopt?: Server;
}

export interface Run {
  /** 0 for the first start, then 1, 2, ... per restart. */
  readonly attempt: number;
  readonly startedAtMs: number;
  pid: number | null;
  /** The process logged "listening" (it started); false when it exited before. */
  listening: boolean;
  /** How it ended; null while it runs, or when the start failed without an exit (startError). */
  exit: ExitStatus | null;
  endedAtMs: number | null;
  /** A start that failed without the process exiting on its own (e.g. no "listening" in time). */
  startError: string | null;
  /** The run's command line and the tail of its output, for failure messages. */
  output: () => string;
}

export type SupervisorState = "running" | "waiting" | "stopped" | "exited-clean" | "gave-up";

export class Supervisor {
  readonly runs: Run[] = [];
  private stateNow: SupervisorState = "running";
  private stopping = false;
  private server: Server | null = null;
  private wake: (() => void) | null = null;
  private gaveUpWhy: string | null = null;
  private readonly loop: Promise<void>;

  constructor(private readonly opts: SupervisorOptions) {
    // A failure of the loop itself (a process that survived SIGKILL) ends supervision, said in describe().
    this.loop = this.supervise().catch((err: unknown) => this.giveUp(`supervision failed: ${err instanceof Error ? err.message : String(err)}`));
  }

  get state(): SupervisorState {
    return this.stateNow;
  }

  /** Why the supervisor stopped restarting (gave-up), for messages. */
  get gaveUpReason(): string | null {
    return this.gaveUpWhy;
  }

  /** The process of the current run when it is listening and has not exited. */
  current(): Server | null {
    return this.server !== null && this.server.running() ? this.server : null;
  }

  /** Exit codes of the runs that ended, in order (null for a death by signal). */
  exitCodes(): (number | null)[] {
    return this.runs.filter((r) => r.exit !== null).map((r) => (r.exit as ExitStatus).code);
  }

  /** One line per run, for failure messages. */
  describe(): string {
    const runs = this.runs.map((r) => {
      const end = r.exit === null ? (r.startError === null ? "running" : `start failed: ${r.startError.split("\n")[0]}`) : `exit ${r.exit.code ?? r.exit.signal}`;
      return `#${r.attempt} pid ${r.pid ?? "?"} ${r.listening ? "listened" : "never listened"}, ${end}`;
    });
    return `supervisor ${this.opts.name}: ${this.stateNow}${this.gaveUpWhy === null ? "" : ` (${this.gaveUpWhy})`}; runs: ${runs.join("; ")}`;
  }

  /** The output of the most recent run (the process that ran last, or the start that failed). */
  lastOutput(): string {
    const r = this.runs[this.runs.length - 1];
    return r === undefined ? "(no run)" : r.output();
  }

  /** Polls (bounded) until cond holds for this supervisor; throws with its runs otherwise. */
  async until(what: string, cond: (s: Supervisor) => boolean, attempts = 600, gapMs = 50): Promise<void> {
    try {
      await pollUntil(what, async () => (cond(this) ? true : undefined), attempts, gapMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${this.describe()}`);
    }
  }

  /** Ends supervision: no more restarts, the running process (if any) gets SIGTERM (SIGKILL after a grace). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    const s = this.server;
    if (s !== null && s.running()) await s.stop();
    await this.loop;
  }

  private async supervise(): Promise<void> {
    for (let attempt = 0; attempt <= this.opts.restartsMax; attempt++) {
      if (this.stopping) break;
      const run: Run = { attempt, startedAtMs: Date.now(), pid: null, listening: false, exit: null, endedAtMs: null, startError: null, output: () => "(not started yet)" };
      this.runs.push(run);
      this.stateNow = "running";
      try {
        const s = attempt === 0 && this.opts.adopt !== undefined ? this.opts.adopt : await this.opts.start();
        this.server = s;
        run.pid = s.pid;
        run.listening = true;
        run.output = () => s.output();
        if (this.stopping) await s.stop(); // stop() came while this start was under way
        run.exit = await s.exited;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        run.output = () => message; // startServer's message holds the command line and the output
        if (err instanceof ExitedBeforeListening) {
          run.exit = err.status;
        } else {
          run.startError = message;
          this.giveUp(`start #${attempt} failed without an exit: ${run.startError.split("\n")[0]}`);
          run.endedAtMs = Date.now();
          return;
        }
      }
      run.endedAtMs = Date.now();
      this.server = null;
      if (this.stopping) break;
      const { code } = run.exit;
      if (code === 0) {
        this.stateNow = "exited-clean"; // Restart=on-failure: a clean exit stays down
        return;
      }
      if (code !== null && (this.opts.preventRestartExitCodes ?? []).includes(code)) {
        this.giveUp(`exit ${code} is in RestartPreventExitStatus: an operator must act`);
        return;
      }
      if (attempt === this.opts.restartsMax) break;
      this.stateNow = "waiting";
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.opts.restartDelayMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
    if (this.stopping) this.stateNow = "stopped";
    else this.giveUp(`${this.opts.restartsMax} restarts used up`);
  }

  private giveUp(why: string): void {
    this.stateNow = "gave-up";
    this.gaveUpWhy = why;
  }
}
