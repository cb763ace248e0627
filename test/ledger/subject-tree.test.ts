// src/ledger/subject-tree.ts against test/support/independent.ts: subjects_root is the RFC 9162 root
// over one leaf per subject in the order of its first record, and its proofs verify with the
// independent RFC 9162 verifier, after any sequence of new subjects and new versions, read at any
// point, and on copies that later changes to the original do not reach.
import fc from "fast-check";
import { SubjectTree, subjectLeafData, subjectLeafHash, subjectTreeOf } from "../../src/ledger/subject-tree";
import { MemoryState } from "../../src/ledger/state-machine";
import { leafHash } from "../../src/ledger/merkle";
import { toHex } from "../../src/ledger/bytes";
import { canonicalBytes, canonicalJson } from "../../src/ledger/canonical";
import * as ind from "../support/independent";

const head = (n: number): Buffer => ind.sha256(Buffer.from(`head ${n}`));

/** The independent model: subjects in first-seen order with their latest version and head. */
class Model {
  readonly order: string[] = [];
  readonly rows = new Map<string, { version: number; head: Buffer }>();
  set(subject: string, version: number, h: Buffer): void {
    if (!this.rows.has(subject)) this.order.push(subject);
    this.rows.set(subject, { version, head: h });
  }
  leaves(): Buffer[] {
    return this.order.map((s) => {
      const r = this.rows.get(s) as { version: number; head: Buffer };
      return ind.subjectLeafHash(s, r.version, r.head);
    });
  }
  root(): string {
    return ind.merkleRoot(this.leaves()).toString("hex");
  }
}

describe("subjects_root", () => {
  test("the leaf is SHA-256(0x00 || \"resonetics/subject/v1\" || canonical {head, subject, version})", () => {
    const h = head(1);
    const data = subjectLeafData("policy/é", 3, h);
    expect(Buffer.from(data).toString("utf8")).toBe(`resonetics/subject/v1{"head":"${h.toString("hex")}","subject":"policy/é","version":3}`);
    expect(toHex(leafHash(data))).toBe(ind.subjectLeafHash("policy/é", 3, h).toString("hex"));
  });

  test("subjectLeafHash, written into a reused buffer, is the independent leaf hash for any subject, version and head, call after call (seed printed on failure)", () => {
    const seed = ind.testSeed();
    fc.assert(fc.property(fc.oneof(fc.string({ unit: "grapheme", minLength: 1, maxLength: 200 }), fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 200 })), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (subject, version, h) => {
      expect(toHex(subjectLeafHash(subject, version, h))).toBe(ind.subjectLeafHash(subject, version, Buffer.from(h)).toString("hex"));
    }), { seed, numRuns: 500 });
    // Past the buffer (4 KiB): built the other way, the same hash; and the buffer's next use is whole again.
    for (const subject of ["😀".repeat(1100), "\u0001".repeat(800), "a"]) {
      expect(toHex(subjectLeafHash(subject, 7, head(3)))).toBe(ind.subjectLeafHash(subject, 7, head(3)).toString("hex"));
    }
    // A head that is not 32 bytes (none is: it is a SHA-256) is hashed as given, even one past the buffer.
    for (const h of [Buffer.alloc(31, 1), Buffer.alloc(3000, 2)]) {
      expect(toHex(subjectLeafHash("s", 1, h))).toBe(ind.subjectLeafHash("s", 1, h).toString("hex"));
    }
  });

  test("the leaf data is the canonical JSON (canonicalBytes) of {head, subject, version} for any subject and version", () => {
    const seed = ind.testSeed();
    fc.assert(fc.property(fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (subject, version, h) => {
      const want = Buffer.concat([Buffer.from("resonetics/subject/v1"), Buffer.from(canonicalBytes({ head: toHex(h), subject, version }))]);
      expect(Buffer.from(subjectLeafData(subject, version, h)).equals(want)).toBe(true);
    }), { seed, numRuns: 500 });
    for (const subject of ["\u0000\u001f\"\\/\u2028\u007f", "é😀"]) {
      expect(Buffer.from(subjectLeafData(subject, 1, head(2))).toString("utf8")).toBe(`resonetics/subject/v1${canonicalJson({ head: head(2).toString("hex"), subject, version: 1 })}`);
    }
    expect(() => subjectLeafData("s", 0, head(1))).toThrow("subject version 0");
  });

  test("an empty tree has the empty root and proves nothing", () => {
    const t = new SubjectTree();
    expect(t.size).toBe(0);
    expect(toHex(t.root())).toBe(ind.sha256().toString("hex"));
    expect(t.proof("x")).toBeUndefined();
    expect(t.get("x")).toBeUndefined();
  });

  test("one subject: the root is its leaf, the proof is empty", () => {
    const t = new SubjectTree();
    t.set("a", 1, head(1));
    expect(toHex(t.root())).toBe(ind.subjectLeafHash("a", 1, head(1)).toString("hex"));
    expect(t.proof("a")).toEqual({ subject: "a", version: 1, head: head(1), leaf_index: 0, size: 1, path: [] });
  });

  test("a new version changes the leaf in place; a new subject goes to the end, whatever its name", () => {
    const t = new SubjectTree();
    const m = new Model();
    for (const [s, v, h] of [["m", 1, 1], ["b", 1, 2], ["z", 1, 3], ["b", 2, 4], ["a", 1, 5], ["m", 2, 6]] as const) {
      t.set(s, v, head(h));
      m.set(s, v, head(h));
      expect(toHex(t.root())).toBe(m.root());
    }
    expect(["m", "b", "z", "a"].map((s) => t.proof(s)?.leaf_index)).toEqual([0, 1, 2, 3]);
    expect(t.get("b")).toEqual({ subject: "b", version: 2, head: head(4) });
  });

  test("properties: after any sequence of sets, root and every proof agree with the independent tree (seed printed on failure)", () => {
    const seed = ind.testSeed();
    const op = fc.tuple(fc.integer({ min: 0, max: 40 }), fc.boolean());
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 120 }), fc.integer({ min: 0, max: 119 }), (ops, cut) => {
        const t = new SubjectTree();
        const m = new Model();
        let frozen: { tree: SubjectTree; root: string } | undefined;
        ops.forEach(([n, readRoot], i) => {
          const s = `s${n}`;
          const version = (m.rows.get(s)?.version ?? 0) + 1;
          t.set(s, version, head(i));
          m.set(s, version, head(i));
          // Reading the root in between must not change what later reads give.
          if (readRoot) expect(toHex(t.root())).toBe(m.root());
          if (i === cut % ops.length) frozen = { tree: t.clone(), root: m.root() };
        });
        expect(toHex(t.root())).toBe(m.root());
        expect(t.size).toBe(m.order.length);
        const leaves = m.leaves();
        const root = ind.merkleRoot(leaves);
        m.order.forEach((s, i) => {
          const p = t.proof(s);
          expect(p?.leaf_index).toBe(i);
          expect(p?.size).toBe(m.order.length);
          expect(ind.verifyInclusion(i, m.order.length, leaves[i], p?.path ?? [], root)).toBe(true);
        });
        // The copy kept the tree of its moment.
        expect(frozen).toBeDefined();
        if (frozen !== undefined) expect(toHex(frozen.tree.root())).toBe(frozen.root);
      }),
      { seed, numRuns: 200 },
    );
  });

  test("a copy and its original change independently", () => {
    const t = new SubjectTree();
    for (let i = 0; i < 9; i++) t.set(`s${i}`, 1, head(i));
    const before = toHex(t.root());
    const c = t.clone();
    c.set("s3", 2, head(100));
    c.set("new", 1, head(101));
    expect(toHex(t.root())).toBe(before);
    expect(t.size).toBe(9);
    expect(c.size).toBe(10);
    t.set("s8", 2, head(102));
    const m = new Model();
    for (let i = 0; i < 9; i++) m.set(`s${i}`, 1, head(i));
    m.set("s3", 2, head(100));
    m.set("new", 1, head(101));
    expect(toHex(c.root())).toBe(m.root());
  });
});

describe("the tree's order", () => {
  test("leavesInOrder: first-seen order, each subject's latest version", () => {
    const t = new SubjectTree();
    t.set("b", 1, head(1));
    t.set("a", 1, head(2));
    t.set("b", 2, head(3));
    t.set("c", 1, head(4));
    expect([...t.leavesInOrder()].map((l) => [l.subject, l.version, toHex(l.head)])).toEqual([
      ["b", 2, head(3).toString("hex")], ["a", 1, head(2).toString("hex")], ["c", 1, head(4).toString("hex")],
    ]);
  });

  test("subjectTreeOf orders subjects by their first record, not by the order the state holds them in", () => {
    // A state as a snapshot loads it: subjects by name, though "b" had the first record.
    const state = new MemoryState();
    for (const [subject, first, version] of [["a", 7, 2], ["b", 3, 1], ["c", 5, 1]] as const) {
      state.putSubject({ subject, version, head: head(first), lastIndex: first + version });
      for (let v = 1; v <= version; v++) state.addSubjectRecord(subject, v, first + 10 * (v - 1));
    }
    const model = new Model();
    model.set("b", 1, head(3));
    model.set("c", 1, head(5));
    model.set("a", 2, head(7));
    expect(toHex(subjectTreeOf(state).root())).toBe(model.root());
    expect([...subjectTreeOf(state).leavesInOrder()].map((l) => l.subject)).toEqual(["b", "c", "a"]);
  });
});
