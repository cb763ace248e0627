// The independent state_root and replay (test/support/independent.ts) checked three ways: a known
// answer computed with Python hashlib, equality with src's stateRoot / applyEntry on random states
// and logs (fast-check, seeded), and sensitivity: changing any field of any row changes the root.
// Reproduce a failure with RESONETICS_SEED=<seed printed> npx jest test/independent-state.test.ts.
import fc from "fast-check";
import {
  IndDedupRow,
  IndSubjectRow,
  RawLogRow,
  SUBJECT_HEAD_ZERO,
  bufToHex,
  replayLog,
  sha256,
  stateRootOf,
  stateRootOfState,
  subjectHead,
  testSeed,
} from "./support/independent";
import { DedupRow, MemoryState, SubjectRow, applyEntry, stateRoot } from "../src/ledger/state-machine";
import { EntryKind, chainEntry, genesisHash, Entry } from "../src/ledger/entry";
import { encodeRecord, requestDigest, RecordPayload } from "../src/ledger/record";
import { toHex } from "../src/ledger/bytes";

const SEED = testSeed();
/** Random cases per property: each is a few dozen hashes, so 300 runs stay well under a second. */
const NUM_RUNS = 300;
/** Each mutation case recomputes up to ~130 roots of up to 24 leaves (~1 ms each): 60 states, a few seconds. */
const MUTATION_RUNS = 60;
const reproduce = `seed ${SEED}: RESONETICS_SEED=${SEED} npx jest test/independent-state.test.ts`;

/** fc.assert with the run's seed, and the seed in the failure message. */
function check<T>(arb: fc.Arbitrary<T>, prop: (v: T) => void, numRuns = NUM_RUNS): void {
  const out = fc.check(fc.property(arb, prop), { seed: SEED, numRuns });
  if (out.failed) {
    throw new Error(`property failed (${reproduce}) after ${out.numRuns} runs: ${String(out.errorInstance)}\ncounterexample: ${JSON.stringify(out.counterexample)?.slice(0, 1000)}`);
  }
}

const hex32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b));
// Subjects and keys: ASCII, BMP and astral code points, so the sort order is exercised on UTF-16
// code units (an astral character sorts below U+E000..U+FFFF there, above them in code points).
const text = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 6 }),
  fc.constantFrom("a", "b", "\u{1F600}", "\uFF61", "é", "A", "a/b"),
);
const subjectRow = fc.record({ subject: text, version: fc.integer({ min: 1, max: 1e6 }), head: hex32, lastIndex: fc.integer({ min: 1, max: 2 ** 40 }) });
const digest = fc.oneof(fc.constant(""), hex32.map(bufToHex));
const dedupRow = fc.record({ key: text, digest, index: fc.integer({ min: 1, max: 2 ** 40 }), term: fc.integer({ min: 1, max: 2 ** 32 }), hash: hex32 });
const uniqueBy = <T>(arb: fc.Arbitrary<T>, key: (v: T) => string) => fc.uniqueArray(arb, { selector: key, maxLength: 12 });
const state = fc.record({ subjects: uniqueBy(subjectRow, (s) => s.subject), dedup: uniqueBy(dedupRow, (d) => d.key) });

const srcRoot = (subjects: readonly IndSubjectRow[], dedup: readonly IndDedupRow[]): string =>
  toHex(stateRoot(subjects satisfies readonly SubjectRow[], dedup satisfies readonly DedupRow[]));

describe("independent state_root: known answers (Python hashlib)", () => {
  const h1 = subjectHead(SUBJECT_HEAD_ZERO, Buffer.from(Array.from({ length: 32 }, (_, i) => i)));
  const h2 = subjectHead(h1, Buffer.alloc(32, 0xab));
  const subjects: IndSubjectRow[] = [
    { subject: "b/é", version: 2, head: h2, lastIndex: 9 },
    { subject: "a", version: 1, head: h1, lastIndex: 3 },
  ];
  const dedup: IndDedupRow[] = [
    { key: "k-2", digest: "", index: 9, term: 2, hash: Buffer.alloc(32, 0xab) },
    { key: "k-1", digest: "11".repeat(32), index: 3, term: 1, hash: Buffer.from(Array.from({ length: 32 }, (_, i) => i)) },
  ];

  test("subject heads chain from 32 zero bytes", () => {
    expect(bufToHex(h1)).toBe("bb2275c49f28ad52cae6d55e34a974a58c7a3ba26f976e8ecbbe7a536918dc73");
    expect(bufToHex(h2)).toBe("e8980c09b6f0ec4f0e7693f946aedd63faf4bb6e117fbddf78badcff1d8fc2ae");
  });

  test("no rows: the empty tree's root; one row; two subjects and two dedup rows", () => {
    expect(bufToHex(stateRootOf([], []))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(bufToHex(stateRootOf([subjects[1]], []))).toBe("0413ce26a63e554753394968e6368c8bb5259fe685d5bf7d6fffc3b603b9fb84");
    expect(bufToHex(stateRootOf(subjects, dedup))).toBe("de83096dadb763fb0a515da37519fe6eb32fd5f2c0a6af18485fc4a619a28492");
  });

  test("src's stateRoot gives the same known answers", () => {
    expect(srcRoot([], [])).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(srcRoot([subjects[1]], [])).toBe("0413ce26a63e554753394968e6368c8bb5259fe685d5bf7d6fffc3b603b9fb84");
    expect(srcRoot(subjects, dedup)).toBe("de83096dadb763fb0a515da37519fe6eb32fd5f2c0a6af18485fc4a619a28492");
  });
});

/** Every single-field change of every row of a state, each with a name for the failure message. */
function mutations(subjects: IndSubjectRow[], dedup: IndDedupRow[]): Array<{ what: string; subjects: IndSubjectRow[]; dedup: IndDedupRow[] }> {
  const out: Array<{ what: string; subjects: IndSubjectRow[]; dedup: IndDedupRow[] }> = [];
  const flip = (b: Buffer, i: number): Buffer => {
    const c = Buffer.from(b);
    c[i % 32] ^= 1 << i % 8;
    return c;
  };
  subjects.forEach((s, i) => {
    const taken = new Set(subjects.map((x) => x.subject));
    let renamed = s.subject + "\u0000";
    while (taken.has(renamed)) renamed += "x";
    const withRow = (row: IndSubjectRow): IndSubjectRow[] => subjects.map((x, j) => (j === i ? row : x));
    out.push({ what: `subject ${i} subject`, subjects: withRow({ ...s, subject: renamed }), dedup });
    out.push({ what: `subject ${i} version`, subjects: withRow({ ...s, version: s.version + 1 }), dedup });
    out.push({ what: `subject ${i} head`, subjects: withRow({ ...s, head: flip(s.head, i) }), dedup });
    out.push({ what: `subject ${i} last_index`, subjects: withRow({ ...s, lastIndex: s.lastIndex + 1 }), dedup });
    out.push({ what: `subject ${i} removed`, subjects: subjects.filter((_, j) => j !== i), dedup });
  });
  dedup.forEach((d, i) => {
    const taken = new Set(dedup.map((x) => x.key));
    let renamed = d.key + "\u0000";
    while (taken.has(renamed)) renamed += "x";
    const withRow = (row: IndDedupRow): IndDedupRow[] => dedup.map((x, j) => (j === i ? row : x));
    out.push({ what: `dedup ${i} key`, subjects, dedup: withRow({ ...d, key: renamed }) });
    out.push({ what: `dedup ${i} digest`, subjects, dedup: withRow({ ...d, digest: d.digest === "" ? "00".repeat(32) : "" }) });
    out.push({ what: `dedup ${i} index`, subjects, dedup: withRow({ ...d, index: d.index + 1 }) });
    out.push({ what: `dedup ${i} term`, subjects, dedup: withRow({ ...d, term: d.term + 1 }) });
    out.push({ what: `dedup ${i} hash`, subjects, dedup: withRow({ ...d, hash: flip(d.hash, i) }) });
    out.push({ what: `dedup ${i} removed`, subjects, dedup: dedup.filter((_, j) => j !== i) });
  });
  return out;
}

describe(`independent state_root against src (${reproduce})`, () => {
  test("equals src's stateRoot on random states, whatever order the rows come in", () => {
    check(state, ({ subjects, dedup }) => {
      const want = bufToHex(stateRootOf(subjects, dedup));
      expect(srcRoot(subjects, dedup)).toBe(want);
      expect(bufToHex(stateRootOf([...subjects].reverse(), [...dedup].reverse()))).toBe(want);
      expect(srcRoot([...subjects].reverse(), [...dedup].reverse())).toBe(want);
    });
  });

  test("changing, renaming or removing any row changes the root", () => {
    check(state, ({ subjects, dedup }) => {
      const before = bufToHex(stateRootOf(subjects, dedup));
      const wrong: string[] = [];
      for (const m of mutations(subjects, dedup)) {
        const after = bufToHex(stateRootOf(m.subjects, m.dedup));
        if (after === before) wrong.push(`${m.what}: the root did not change`);
      }
      // src on one mutated state per case (src's root costs ~9 ms under ts-jest; equality on
      // random states is the test above, this checks it also holds right next to a given state).
      const ms = mutations(subjects, dedup);
      if (ms.length > 0) {
        const m = ms[(subjects.length * 7 + dedup.length) % ms.length];
        const theirs = srcRoot(m.subjects, m.dedup);
        const after = bufToHex(stateRootOf(m.subjects, m.dedup));
        if (theirs !== after) wrong.push(`${m.what}: src ${theirs} != independent ${after}`);
      }
      expect(wrong).toEqual([]);
    }, MUTATION_RUNS);
  });

  test("a subject row and a dedup row never stand for each other (rows are typed)", () => {
    const s: IndSubjectRow = { subject: "k", version: 1, head: Buffer.alloc(32), lastIndex: 1 };
    const d: IndDedupRow = { key: "k", digest: "", index: 1, term: 1, hash: Buffer.alloc(32) };
    expect(bufToHex(stateRootOf([s], []))).not.toBe(bufToHex(stateRootOf([], [d])));
    // Subjects come first: one subject and one dedup row hash differently from two of either.
    expect(bufToHex(stateRootOf([s], [d]))).toBe(srcRoot([s], [d]));
  });
});

// ---------------------------------------------------------------- replay

const CLUSTER = "independent-state";
/** One step of a random log: a record (subject from a small set, so chains grow; key maybe reused) or another kind. */
const step = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant("record" as const), subject: fc.constantFrom("s1", "s2", "s3", "\u{1F600}"), key: fc.option(fc.constantFrom("k1", "k2", "k3", "k4"), { nil: undefined }), value: fc.integer() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("other" as const), kind: fc.constantFrom(EntryKind.Noop, EntryKind.Config, EntryKind.Checkpoint) }) },
);

type Step = { t: "record"; subject: string; key?: string; value: number } | { t: "other"; kind: EntryKind };

function buildLog(steps: readonly Step[]): Entry[] {
  let prev = genesisHash(CLUSTER);
  let term = 1;
  return steps.map((s, i) => {
    if (i % 7 === 6) term++;
    let e: Entry;
    if (s.t === "record") {
      const req = { type: "policy.set", subject: s.subject, data: { name: "n", value: s.value } };
      const p: RecordPayload = { v: 1, ...req, ts: "2026-01-01T00:00:00Z", ...(s.key === undefined ? {} : { idempotency_key: s.key, request_digest: requestDigest(req) }) };
      e = chainEntry(i + 1, term, EntryKind.Record, prev, encodeRecord(p));
    } else {
      e = chainEntry(i + 1, term, s.kind, prev, Buffer.from(`{"v":1,"other":${i}}`));
    }
    prev = e.hash;
    return e;
  });
}

const rawRows = (entries: readonly Entry[]): RawLogRow[] =>
  entries.map((e) => ({ idx: e.index, term: e.term, kind: e.kind, payload: Buffer.from(e.payload), hash: Buffer.from(e.hash) }));

describe(`independent replay against src's apply (${reproduce})`, () => {
  test("replaying random logs gives src's subjects, record lists, dedup rows and state_root", () => {
    check(fc.array(step, { maxLength: 40 }), (steps) => {
      const entries = buildLog(steps);
      const mine = replayLog(rawRows(entries), CLUSTER);
      const theirs = new MemoryState();
      for (const e of entries) applyEntry(theirs, e);
      const subj = (rows: Iterable<{ subject: string; version: number; head: Uint8Array; lastIndex: number }>) =>
        [...rows].map((s) => ({ subject: s.subject, version: s.version, head: toHex(s.head), lastIndex: s.lastIndex })).sort((a, b) => (a.subject < b.subject ? -1 : 1));
      const ded = (rows: Iterable<{ key: string; digest: string; index: number; term: number; hash: Uint8Array }>) =>
        [...rows].map((d) => ({ key: d.key, digest: d.digest, index: d.index, term: d.term, hash: toHex(d.hash) })).sort((a, b) => (a.key < b.key ? -1 : 1));
      expect(subj(mine.subjects.values())).toEqual(subj(theirs.subjects.values()));
      expect(ded(mine.dedup.values())).toEqual(ded(theirs.dedup.values()));
      expect(Object.fromEntries(mine.records)).toEqual(Object.fromEntries(theirs.records));
      expect(bufToHex(stateRootOfState(mine))).toBe(toHex(stateRoot(theirs.subjects.values(), theirs.dedup.values())));
    });
  });

  test("a key seen before changes nothing; a subject's head is its chain of entry hashes", () => {
    const entries = buildLog([
      { t: "record", subject: "a", key: "k", value: 1 },
      { t: "other", kind: EntryKind.Checkpoint },
      { t: "record", subject: "a", key: "k", value: 1 },
      { t: "record", subject: "a", value: 2 },
    ]);
    const s = replayLog(rawRows(entries), CLUSTER);
    const a = s.subjects.get("a");
    expect(a && { version: a.version, lastIndex: a.lastIndex, head: bufToHex(a.head) }).toEqual({
      version: 2,
      lastIndex: 4,
      head: bufToHex(sha256(sha256(SUBJECT_HEAD_ZERO, entries[0].hash), entries[3].hash)),
    });
    expect(s.records.get("a")).toEqual([1, 4]);
    expect([...s.dedup.keys()]).toEqual(["k"]);
    expect(s.dedup.get("k")?.index).toBe(1);
  });

  test("refuses a broken chain, a gap, and a record without a subject, rather than skipping", () => {
    const entries = buildLog([{ t: "record", subject: "a", value: 1 }, { t: "record", subject: "b", value: 2 }]);
    const rows = rawRows(entries);
    expect(() => replayLog(rows, "another-cluster")).toThrow(/hash/);
    const tampered = rows.map((r, i) => (i === 1 ? { ...r, payload: Buffer.from(String(r.payload).replace('"b"', '"c"')) } : r));
    expect(() => replayLog(tampered, CLUSTER)).toThrow(/entry 2 hash/);
    expect(() => replayLog([rows[1]], CLUSTER)).toThrow(/row 2 where 1/);
    const bad = chainEntry(1, 1, EntryKind.Record, genesisHash(CLUSTER), Buffer.from('{"v":1}'));
    expect(() => replayLog(rawRows([bad]), CLUSTER)).toThrow(/no subject/);
  });
});
