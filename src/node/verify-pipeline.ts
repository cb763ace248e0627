/**
 * verify-chain on more than one core. The replay (ledger/verify.ts verifyChainSteps) is sequential,
 * but most of its work per entry is not: recomputing the entry hash from the stored hash before it,
 * the Merkle leaf hash, and parsing and checking a RECORD payload (entryFacts) depend on the
 * entry's own bytes alone. Here worker threads compute them a page of entries at a time, ahead of
 * the replay; this thread reads the pages (from its one read transaction: one snapshot of the
 * database), hands each entry to the replay with its facts, and serves the replay's Merkle node
 * reads from one range query per level per page instead of one query per node. A worker also
 * hashes the Merkle nodes that lie inside its page (one per entry, on average), so this thread
 * hashes only those that span two pages: 12% of its CPU on bench:verify's log when it hashed all.
 *
 * The replay is synchronous (verifyChain is one call, and so is the command), so this thread waits
 * for a page's facts with Atomics.wait on a counter the worker bumps after it posts them, and takes
 * the message with receiveMessageOnPort. Pages go to the workers in turn and each worker answers
 * in order, so page j's facts are the next message on worker j mod W's port.
 *
 * Behind the replay, one more worker runs its checkpoint checks (CheckpointCheck: a signature, and
 * subjects_root against a subject tree it keeps from the replay's changes): 27% of this thread's
 * CPU when they ran here, on bench:verify's log (1,000 subjects, a checkpoint every ~460 entries).
 * The replay waits for them only at the end, or to report a violation: a check that failed before
 * it is the one reported.
 */
import { isMainThread, MessageChannel, MessagePort, receiveMessageOnPort, Worker, workerData } from "node:worker_threads";
import { Entry, EntryKind } from "../ledger/entry";
import type { Checkpoint } from "../ledger/checkpoint";
import { ChainSource, CheckpointCheck, CheckpointChecker, CheckpointChecks, CheckpointFailure, EntryFacts, entryFacts } from "../ledger/verify";
import type { RecordKeys } from "../ledger/state-machine";
import { assert } from "../util/assert";
import type { HexLogRow } from "../storage/store";
import { startWorker } from "./background";
import { useNativeCrypto } from "./native-crypto";
import { leafHash, nodeHash } from "../ledger/merkle";

/** Entries per page: ~40 ms of a worker's time; big enough that messages cost little per entry. */
export const PAGE_ENTRIES = 2048;
/** A page ends sooner past this many payload bytes, so a page of large records stays a few MiB in flight. */
const PAGE_BYTES = 4 * 1024 * 1024;
/** Pages read ahead per worker: one being computed and one waiting, so a worker never idles between pages. */
const PAGES_AHEAD_PER_WORKER = 2;
/** A worker that has not answered a page in this long is taken for dead (a page takes well under a second). */
const PAGE_WAIT_MS = 120_000;
/** Workers at most: past ~4 the replay on this thread is the bottleneck (it does a third of the work or more). */
export const WORKERS_MAX = 4;
/**
 * Checkpoint checks out at once, at most: past this the replay waits for the oldest. Each holds the
 * subjects changed since the one before (at most a checkpoint interval's records, ~1,000 by
 * default); the worker gets through one in a few milliseconds, so 32 is ample lead.
 */
const CHECKS_AHEAD = 32;

/** A worker per core but the one the replay runs on, at least one, at most WORKERS_MAX. */
export function defaultWorkers(cores: number): number {
  return Math.max(1, Math.min(WORKERS_MAX, cores - 1));
}

/** The facts of one entry as they cross threads: hashMatches encoded, its leaf in the page's leaves. */
const enum Status {
  /** No facts: the first entry read, whose predecessor's hash the replay alone knows. */
  None = 0,
  Matches = 1,
  Differs = 2,
  /** Its index, term or kind is not of the format (hashMatches undefined). */
  NotHashable = 3,
}

/** A page of entries packed into two transferable buffers. */
export interface PageJob {
  readonly page: number;
  /** The stored hash of the entry before the page's first, or null for the very first page. */
  readonly prev: Uint8Array | null;
  /** Per entry: index, term, kind, payload length, hash length. */
  readonly meta: Float64Array;
  /** Per entry: payload then hash bytes. */
  readonly bytes: Uint8Array;
}

export interface PageFacts {
  readonly page: number;
  /**
   * The job's meta and bytes, handed back: the page's arrays go to the worker and back by transfer,
   * never copied (a copy each way was 7% of this thread's time), and the replay takes the entries from them.
   */
  readonly meta: Float64Array;
  readonly bytes: Uint8Array;
  readonly status: Uint8Array;
  /** 32 bytes per entry: its leaf hash (zeros where status is None). */
  readonly leaves: Uint8Array;
  /** Per entry: how many Merkle nodes inside the page its leaf completes (pageNodeMerges). */
  readonly merges: Uint8Array;
  /** Those nodes' hashes, 32 bytes each, entry by entry and lowest level first (CompactRange.append's merged). */
  readonly nodes: Uint8Array;
  readonly records: ReadonlyArray<RecordKeys | { readonly problem: string } | null>;
  /** Set when the worker could not compute the page (a bug): the replay stops with it. */
  readonly error?: string;
}

const META_FIELDS = 5;

/**
 * What this thread keeps of a page while a worker computes its facts: not the entries as read
 * (kept as objects, the entries of the pages in flight, thousands, each with two Buffers of its own
 * from SQLite, outlived V8's young-generation collections and were copied by each), nor the packed
 * arrays (transferred to the worker, which hands them back with the facts).
 */
interface PendingPage {
  /** Entries in the page. */
  readonly n: number;
  /** By position: entries whose index, term or kind is not a number (a damaged row), kept as read so the replay reports them as they are. */
  readonly odd: ReadonlyMap<number, Entry>;
}

/**
 * Packs a page of log rows as read (payload and hash as hex) into a job's two arrays. Entries whose
 * index, term or kind is not a number (a damaged row: packing carries doubles exactly, nothing else)
 * are also kept as read, by position, so the replay reports them as they are. Also returns the
 * page's last stored hash, the next page's prev.
 */
function packPage(page: number, prev: Uint8Array | null, rows: readonly HexLogRow[]): { job: PageJob; odd: Map<number, Entry>; last: Uint8Array } {
  let total = 0;
  for (const r of rows) total += (r[3].length + r[4].length) / 2;
  const meta = new Float64Array(rows.length * META_FIELDS);
  // Its own ArrayBuffer (never a slice of Buffer's pool): it is transferred to the worker.
  const bytes = new Uint8Array(total);
  const into = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const odd = new Map<number, Entry>();
  let off = 0;
  let last = new Uint8Array(0);
  rows.forEach(([index, term, kind, payloadHex, hashHex], i) => {
    const payloadAt = off;
    off += into.write(payloadHex, off, "hex");
    const hashAt = off;
    off += into.write(hashHex, off, "hex");
    const m = i * META_FIELDS;
    meta[m] = index as number;
    meta[m + 1] = term as number;
    meta[m + 2] = kind as number;
    meta[m + 3] = hashAt - payloadAt;
    meta[m + 4] = off - hashAt;
    if (typeof index !== "number" || typeof term !== "number" || typeof kind !== "number") {
      odd.set(i, { index, term, kind, payload: bytes.slice(payloadAt, hashAt), hash: bytes.slice(hashAt, off) } as Entry);
    }
    if (i === rows.length - 1) last = bytes.slice(hashAt, off);
  });
  assert(off === total, `packed ${off} bytes of a page of ${total}`);
  return { job: { page, prev, meta, bytes }, odd, last };
}

/**
 * How many Merkle nodes the i-th leaf of a page completes inside the page, the page's first leaf
 * being leaf `first` of the log: the merges of levels 1, 2, ... while the leaf ends a node of that
 * level ((leaf + 1) divisible by 2^level) and the node starts in the page (2^level <= i + 1). The
 * replay makes these merges first, lowest level first, and any higher ones itself.
 */
export function pageNodeMerges(first: number, i: number): number {
  const leaf = first + i;
  let merges = 0;
  for (let span = 2; span <= i + 1 && (leaf + 1) % span === 0; span *= 2) merges++;
  return merges;
}

/** The worker's side: the facts of every entry of a page (the first one's only when prev is known). */
export function computePage(job: PageJob): PageFacts {
  const n = job.meta.length / META_FIELDS;
  const status = new Uint8Array(n);
  const leaves = new Uint8Array(32 * n);
  const merges = new Uint8Array(n);
  const records: Array<RecordKeys | { readonly problem: string } | null> = [];
  // The Merkle nodes inside the page, when its first index is a log index (the replay stops at a
  // first entry of any other before it takes its facts): a stack of the page's completed subtrees,
  // as CompactRange keeps the log's. Entries after a gap get nodes as if there were none; the
  // replay stops at the gap.
  const first = job.meta[0] - 1;
  const tree = n > 0 && first >= 0 && Number.isSafeInteger(first + n);
  const stack: Uint8Array[] = [];
  const nodes: Uint8Array[] = [];
  let prev = job.prev;
  let off = 0;
  for (let i = 0; i < n; i++) {
    const m = i * META_FIELDS;
    const payloadLength = job.meta[m + 3];
    const hashLength = job.meta[m + 4];
    const payload = job.bytes.subarray(off, off + payloadLength);
    const hash = job.bytes.subarray(off + payloadLength, off + payloadLength + hashLength);
    off += payloadLength + hashLength;
    let leaf: Uint8Array;
    if (prev === null) {
      records.push(null);
      leaf = leafHash(hash);
    } else {
      const f = entryFacts({ index: job.meta[m], term: job.meta[m + 1], kind: job.meta[m + 2] as EntryKind, payload, hash }, prev);
      status[i] = f.hashMatches === undefined ? Status.NotHashable : f.hashMatches ? Status.Matches : Status.Differs;
      leaves.set(f.leaf, 32 * i);
      records.push(f.record ?? null);
      leaf = f.leaf;
    }
    if (tree) {
      merges[i] = pageNodeMerges(first, i);
      let node = leaf;
      for (let k = 0; k < merges[i]; k++) {
        node = nodeHash(stack.pop() as Uint8Array, node);
        nodes.push(node);
      }
      stack.push(node);
    }
    prev = hash;
  }
  const packed = new Uint8Array(32 * nodes.length);
  nodes.forEach((h, k) => packed.set(h, 32 * k));
  return { page: job.page, meta: job.meta, bytes: job.bytes, status, leaves, merges, nodes: packed, records };
}

/** The facts of entry i of a page, as the replay takes them (merged: its nodes' hashes); undefined for Status.None. */
function factsAt(f: PageFacts, i: number, merged: Uint8Array): EntryFacts | undefined {
  const s = f.status[i] as Status;
  if (s === Status.None) return undefined;
  const hashMatches = s === Status.NotHashable ? undefined : s === Status.Matches;
  const leaf = f.leaves.subarray(32 * i, 32 * (i + 1));
  const record = f.records[i];
  return record === null ? { hashMatches, leaf, merged } : { hashMatches, leaf, record, merged };
}

/** A CheckpointCheck as it crosses threads: the changed leaves packed, and the verification it belongs to. */
export interface CheckJob {
  /** Which verification: a worker starts a new subject tree when it changes. */
  readonly run: number;
  readonly index: number;
  readonly checkpoint: Checkpoint;
  readonly key: string;
  readonly compareSubjects: boolean;
  readonly subjects: readonly string[];
  readonly versions: Float64Array;
  /** 32 bytes per changed subject: its head. */
  readonly heads: Uint8Array;
}

export interface CheckAnswer {
  readonly run: number;
  readonly index: number;
  /** Why the check failed, or null. */
  readonly reason: string | null;
  /** Set when the worker could not run the check (a bug): the verification stops with it. */
  readonly error?: string;
}

/**
 * Verifications that handed checks to an executor in this process, so far: each one's checks are a
 * run of their own, whichever source and executor served it (an executor may outlive a source).
 */
let checkRuns = 0;

function packCheck(run: number, c: CheckpointCheck): CheckJob {
  const n = c.changed.length;
  const versions = new Float64Array(n);
  const heads = new Uint8Array(32 * n);
  const subjects: string[] = [];
  c.changed.forEach((leaf, i) => {
    subjects.push(leaf.subject);
    versions[i] = leaf.version;
    heads.set(leaf.head, 32 * i);
  });
  return { run, index: c.index, checkpoint: c.checkpoint, key: c.key, compareSubjects: c.compareSubjects, subjects, versions, heads };
}

/** The worker's side of a check: the next one of a verification whose checks it keeps in `checker`. */
export function runCheck(checker: CheckpointChecker, job: CheckJob): CheckAnswer {
  const changed = job.subjects.map((subject, i) => ({ subject, version: job.versions[i], head: job.heads.subarray(32 * i, 32 * (i + 1)) }));
  const { run, index, checkpoint, key, compareSubjects } = job;
  return { run, index, reason: checker.check({ index, checkpoint, key, compareSubjects, changed }) };
}

/**
 * Checkpoint checks through an executor, for one verification (`run`): at most CHECKS_AHEAD out;
 * answers of an earlier verification that stopped early are passed over.
 */
class PipelinedChecks implements CheckpointChecks {
  private outstanding = 0;
  private failure: CheckpointFailure | null = null;

  constructor(private readonly exec: PageExecutor, private readonly run: number) {}

  submit(check: CheckpointCheck): void {
    if (this.failure !== null) return; // the first failure is the report: later checks cannot change it
    // Ends: each turn takes an answer (waiting for it), and outstanding counts this run's answers to come.
    while (this.outstanding >= CHECKS_AHEAD) this.take(true);
    this.exec.submitCheck(packCheck(this.run, check));
    this.outstanding++;
  }

  failed(): CheckpointFailure | null {
    // Ends: each turn takes an answer already there, and there are at most outstanding of them.
    while (this.outstanding > 0 && this.take(false));
    return this.failure;
  }

  settle(): CheckpointFailure | null {
    // Ends: as in submit.
    while (this.outstanding > 0) this.take(true);
    return this.failure;
  }

  /** Takes one answer (waiting for it, or only if one is there); false when none was there. */
  private take(wait: boolean): boolean {
    const a = this.exec.nextCheck(wait);
    if (a === undefined) return false;
    if (a.run !== this.run) return true;
    this.outstanding--;
    if (a.error !== undefined) throw new Error(`a verify worker failed on the checkpoint at ${a.index}: ${a.error}`);
    if (a.reason !== null && this.failure === null) this.failure = { index: a.index, reason: a.reason };
    return true;
  }
}

interface WorkerHandle {
  readonly worker: Worker;
  readonly port: MessagePort;
  /** Bumped by the worker after each page it posts. */
  readonly signal: Int32Array;
}

interface WorkerData {
  readonly verifyPipeline: true;
  /** What the worker answers: pages of entry facts, or checkpoint checks. */
  readonly role: "pages" | "checks";
  readonly port: MessagePort;
  readonly signal: Int32Array;
}

/** Waits (blocking this thread) for the next message on w's port. */
function nextMessage<T>(w: WorkerHandle): T {
  const deadline = Date.now() + PAGE_WAIT_MS;
  // Ends: each turn either returns a message, or waits until the worker bumps the counter or the deadline passes.
  for (;;) {
    const seen = Atomics.load(w.signal, 0);
    const m = receiveMessageOnPort(w.port);
    if (m !== undefined) return m.message as T;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`a verify worker did not answer in ${PAGE_WAIT_MS / 1000} s`);
    Atomics.wait(w.signal, 0, seen, left);
  }
}

/**
 * Stored Merkle nodes read ahead a page at a time: per level, the runs of hashes that the pages in
 * flight complete, oldest first. The replay asks for each level's nodes in increasing index order,
 * so a run is dropped once the replay asks past it. A run that is not whole (a node missing or not
 * 32 bytes: only in a damaged data dir) is not kept; the replay then reads those nodes one by one.
 */
class NodeCache {
  private readonly levels: Array<Array<{ readonly from: number; readonly to: number; readonly hashes: Uint8Array }>> = [];

  /** Every stored node that entries a..b complete: node (l, k) is completed by entry (k + 1) * 2^l. */
  load(store: PagedChainSource, a: number, b: number): void {
    for (let level = 0, span = 1; span <= b; level++, span *= 2) {
      const from = Math.ceil(a / span) - 1;
      const to = Math.floor(b / span) - 1;
      if (from > to) continue;
      const hashes = store.nodeRun(level, from, to);
      if (hashes !== undefined) (this.levels[level] ??= []).push({ from, to, hashes });
    }
  }

  take(level: number, index: number): Uint8Array | undefined {
    const runs = this.levels[level];
    if (runs === undefined) return undefined;
    while (runs.length > 0 && runs[0].to < index) runs.shift();
    const run = runs[0];
    if (run === undefined || run.from > index) return undefined;
    const at = (index - run.from) * 32;
    return run.hashes.subarray(at, at + 32);
  }

  clear(): void {
    this.levels.length = 0;
  }
}

/** A ChainSource that can also read a run of stored Merkle nodes in one go and log rows as hex (Store does). */
export interface PagedChainSource extends ChainSource {
  /** The log rows from..to as stored, in index order, payload and hash as hex (Store.logRowsHex). */
  logRowsHex(from: number, to: number): IterableIterator<HexLogRow>;
  /** The hashes of nodes from..to of a level, 32 bytes each in index order; undefined unless every one is stored and 32 bytes long. */
  nodeRun(level: number, from: number, to: number): Uint8Array | undefined;
}

/**
 * Where a ParallelChainSource's pages are computed: `slots` lanes that pages go to in turn, each
 * answering its own pages in the order it got them.
 */
export interface PageExecutor {
  readonly slots: number;
  submit(slot: number, job: PageJob): void;
  /** The slot's next answer, waiting for it. */
  next(slot: number): PageFacts;
  /** Runs checkpoint checks in the order submitted (one lane: each check needs the tree its predecessors left). */
  submitCheck(job: CheckJob): void;
  /** The next check's answer: waiting for it, or undefined if it is not there yet. */
  nextCheck(wait: boolean): CheckAnswer | undefined;
}

/**
 * Pages computed on this thread as they are submitted: the replay's use of facts computed ahead,
 * without threads (test/ledger/verify.test.ts verifies every case this way too). Checkpoint checks
 * run only when their answer is waited for, as late as a worker could answer them, so a check that
 * fails is found after the replay went past it.
 */
export class InThreadPages implements PageExecutor {
  readonly slots = 1;
  private readonly answers: PageFacts[] = [];
  private readonly checks: CheckJob[] = [];
  private checker = { run: -1, checker: new CheckpointChecker() };

  submit(_slot: number, job: PageJob): void {
    this.answers.push(computePage(job));
  }

  next(): PageFacts {
    const a = this.answers.shift();
    assert(a !== undefined, "no page was submitted to answer");
    return a;
  }

  submitCheck(job: CheckJob): void {
    this.checks.push(job);
  }

  nextCheck(wait: boolean): CheckAnswer | undefined {
    if (!wait) return undefined;
    const job = this.checks.shift();
    assert(job !== undefined, "no check was submitted to answer");
    if (job.run !== this.checker.run) this.checker = { run: job.run, checker: new CheckpointChecker() };
    return runCheck(this.checker.checker, job);
  }
}

/**
 * The worker threads a ParallelChainSource hands its pages to. Started on first use; close() ends
 * them (a CLI's pool is unref'd, so it never keeps the process alive either way).
 */
export class VerifyWorkers implements PageExecutor {
  private handles: WorkerHandle[] = [];
  private checkLane: WorkerHandle | undefined;

  constructor(readonly count: number) {
    assert(Number.isSafeInteger(count) && count >= 1, `workers ${count}`);
  }

  get slots(): number {
    return this.count;
  }

  submit(slot: number, job: PageJob): void {
    // Transferred (the worker hands them back with the facts): job.meta and job.bytes are empty here after this.
    this.started[slot].port.postMessage(job, [job.meta.buffer as ArrayBuffer, job.bytes.buffer as ArrayBuffer]);
  }

  next(slot: number): PageFacts {
    return nextMessage<PageFacts>(this.started[slot]);
  }

  submitCheck(job: CheckJob): void {
    this.checkLane ??= startLane("checks");
    this.checkLane.port.postMessage(job, [job.versions.buffer as ArrayBuffer, job.heads.buffer as ArrayBuffer]);
  }

  nextCheck(wait: boolean): CheckAnswer | undefined {
    assert(this.checkLane !== undefined, "no check was submitted to answer");
    if (wait) return nextMessage<CheckAnswer>(this.checkLane);
    return receiveMessageOnPort(this.checkLane.port)?.message as CheckAnswer | undefined;
  }

  /** The started page workers (starting them if needed). */
  private get started(): readonly WorkerHandle[] {
    if (this.handles.length === 0) {
      for (let i = 0; i < this.count; i++) this.handles.push(startLane("pages"));
    }
    return this.handles;
  }

  /** Ends the workers (idempotent); the next use starts new ones. */
  close(): void {
    const lanes = this.handles.splice(0);
    if (this.checkLane !== undefined) lanes.push(this.checkLane);
    this.checkLane = undefined;
    for (const w of lanes) {
      w.port.close();
      void w.worker.terminate();
    }
  }
}

/** A worker thread of the pipeline, unref'd (it never keeps the process alive), answering on its own port. */
function startLane(role: WorkerData["role"]): WorkerHandle {
  const { port1, port2 } = new MessageChannel();
  const signal = new Int32Array(new SharedArrayBuffer(4));
  const data: WorkerData = { verifyPipeline: true, role, port: port2, signal };
  const worker = startWorker(__filename, data, [port2]);
  worker.unref();
  port1.unref();
  return { worker, port: port1, signal };
}

/**
 * A ChainSource over `inner` whose entries come with their facts computed by `pages` (worker threads), a page of
 * `pageEntries` at a time (tests use small pages to cross many page edges). Everything else is
 * inner's, read on this thread only.
 */
export class ParallelChainSource implements ChainSource {
  private readonly cache = new NodeCache();

  constructor(private readonly inner: PagedChainSource, private readonly pages: PageExecutor, private readonly pageEntries = PAGE_ENTRIES) {
    assert(Number.isSafeInteger(pageEntries) && pageEntries >= 1, `pageEntries ${pageEntries}`);
  }

  getMeta(key: string): string | undefined {
    return this.inner.getMeta(key);
  }
  hardState(): ReturnType<ChainSource["hardState"]> {
    return this.inner.hardState();
  }
  lastIndex(): number {
    return this.inner.lastIndex();
  }
  findNode(level: number, index: number): Uint8Array | undefined {
    return this.cache.take(level, index) ?? this.inner.findNode(level, index);
  }
  checkpoints(cluster: string): ReturnType<ChainSource["checkpoints"]> {
    return this.inner.checkpoints(cluster);
  }
  allSubjects(): ReturnType<ChainSource["allSubjects"]> {
    return this.inner.allSubjects();
  }
  allSubjectRecords(): ReturnType<ChainSource["allSubjectRecords"]> {
    return this.inner.allSubjectRecords();
  }
  allDedup(): ReturnType<ChainSource["allDedup"]> {
    return this.inner.allDedup();
  }
  latestSnapshotBytes(): Uint8Array | undefined {
    return this.inner.latestSnapshotBytes();
  }
  anchor(): ReturnType<ChainSource["anchor"]> {
    return this.inner.anchor();
  }
  get snapshotIndexes(): ChainSource["snapshotIndexes"] {
    return this.inner.snapshotIndexes?.bind(this.inner);
  }
  get snapshotBytesAt(): ChainSource["snapshotBytesAt"] {
    return this.inner.snapshotBytesAt?.bind(this.inner);
  }
  checkpointChecks(): CheckpointChecks {
    return new PipelinedChecks(this.pages, ++checkRuns);
  }

  *entries(from: number, to: number): Generator<Entry & { readonly facts?: EntryFacts }, void, void> {
    const slots = this.pages.slots;
    const rows = this.inner.logRowsHex(from, to);
    const ahead = PAGES_AHEAD_PER_WORKER * slots;
    const pending: PendingPage[] = [];
    let sent = 0;
    let taken = 0;
    let prev: Uint8Array | null = null;
    let exhausted = false;
    try {
      // Ends: every turn takes one page off `pending`, and `rows` yields finitely many entries.
      for (;;) {
        while (!exhausted && pending.length < ahead) {
          const read = this.readPage(rows);
          if (read.length === 0) {
            exhausted = true;
            break;
          }
          const { job, odd, last } = packPage(sent, prev, read);
          this.cache.load(this.inner, read[0][0] as number, read[read.length - 1][0] as number);
          pending.push({ n: read.length, odd });
          prev = last;
          this.pages.submit(sent % slots, job);
          sent++;
        }
        const page = pending.shift();
        if (page === undefined) return;
        const { n, odd } = page;
        const facts = this.pages.next(taken % slots);
        if (facts.error !== undefined) throw new Error(`a verify worker failed on a page: ${facts.error}`);
        assert(facts.page === taken && facts.status.length === n && facts.meta.length === n * META_FIELDS,
          `verify worker answered page ${facts.page} (${facts.status.length} entries) for page ${taken} (${n})`);
        const { meta, bytes } = facts;
        taken++;
        let at = 0;
        let off = 0;
        for (let i = 0; i < n; i++) {
          const m = i * META_FIELDS;
          const payloadEnd = off + meta[m + 3];
          const hashEnd = payloadEnd + meta[m + 4];
          // The payload a view of the page (nothing keeps one past its step), the hash a copy of its
          // own (a dedup row keeps it, which would keep the whole page).
          const e = odd.get(i) ?? { index: meta[m], term: meta[m + 1], kind: meta[m + 2] as EntryKind, payload: bytes.subarray(off, payloadEnd), hash: bytes.slice(payloadEnd, hashEnd) };
          off = hashEnd;
          const merged = facts.nodes.subarray(at, at + 32 * facts.merges[i]);
          at += merged.length;
          const f = factsAt(facts, i, merged);
          yield f === undefined ? e : { index: e.index, term: e.term, kind: e.kind, payload: e.payload, hash: e.hash, facts: f };
        }
      }
    } finally {
      // The inner source's read ends here too (an open statement keeps its connection busy).
      rows.return?.();
      this.cache.clear();
      // Pages still out would be answered later, into the next entries() call's turn: drain them.
      for (; taken < sent; taken++) this.pages.next(taken % slots);
    }
  }

  /** The next page of rows as read; they are packed at once, and only the packed page is kept. */
  private readPage(rows: Iterator<HexLogRow>): HexLogRow[] {
    const page: HexLogRow[] = [];
    let bytes = 0;
    while (page.length < this.pageEntries && bytes < PAGE_BYTES) {
      const r = rows.next();
      if (r.done === true) break;
      page.push(r.value);
      bytes += r.value[3].length / 2;
    }
    return page;
  }
}

if (!isMainThread && (workerData as Partial<WorkerData> | null)?.verifyPipeline === true) {
  const { port, signal, role } = workerData as WorkerData;
  useNativeCrypto();
  const posted = (): void => {
    Atomics.add(signal, 0, 1);
    Atomics.notify(signal, 0);
  };
  if (role === "pages") {
    port.on("message", (job: PageJob) => {
      let out: PageFacts;
      try {
        out = computePage(job);
      } catch (err) {
        out = { page: job.page, meta: job.meta, bytes: job.bytes, status: new Uint8Array(0), leaves: new Uint8Array(0), merges: new Uint8Array(0), nodes: new Uint8Array(0), records: [], error: (err as Error).message };
      }
      port.postMessage(out, [out.meta.buffer, out.bytes.buffer, out.status.buffer, out.leaves.buffer, out.merges.buffer, out.nodes.buffer] as ArrayBuffer[]);
      posted();
    });
  } else {
    let current = { run: -1, checker: new CheckpointChecker() };
    port.on("message", (job: CheckJob) => {
      if (job.run !== current.run) current = { run: job.run, checker: new CheckpointChecker() };
      let out: CheckAnswer;
      try {
        out = runCheck(current.checker, job);
      } catch (err) {
        out = { run: job.run, index: job.index, reason: null, error: (err as Error).message };
      }
      port.postMessage(out);
      posted();
    });
  }
}
