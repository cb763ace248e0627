// Edges of the small src/ledger modules that the mutation run (npm run mutate -- ledger:small) found
// untested: hexToBytes's error, payloads that are JSON but not objects, each field of a CHECKPOINT
// payload, checkpoint views with and without subjects_root through trust files and --checkpoint
// values, and canonical padded base64. Signatures are checked with node:crypto (independent.ts).
import { fromHex, hexToBytes, utf8 } from "../../src/ledger/bytes";
import { canonicalBytes, decodeV1Object } from "../../src/ledger/canonical";
import { checkpointViewKeysProblem, decodeCheckpoint, signCheckpoint, type Checkpoint } from "../../src/ledger/checkpoint";
import { decompose } from "../../src/ledger/merkle";
import { B64 } from "../../src/ledger/shapes";
import { checkpointFromValue, makeTrustFile, parseCheckpointFile, type PinnedCheckpoint } from "../../src/ledger/trust";
import * as ind from "../support/independent";

const SEED = new Uint8Array(32).fill(9);
const body = (extra: Record<string, unknown> = {}) => ({
  v: 1 as const, cluster: "edges", size: 6, root: "ab".repeat(32), head: "cd".repeat(32), term: 2, signer: "n1", ts: "2026-01-01T00:00:00Z", ...extra,
});
const withSubjects = (): Checkpoint => signCheckpoint({ ...body(), subjects_root: "ef".repeat(32) }, SEED);
const without = (): Checkpoint => signCheckpoint(body(), SEED);
const pubHex = (): string => ind.keyPair(SEED).publicKey.toString("hex");

describe("bytes", () => {
  test("hexToBytes names the bad input, cut to 80 characters", () => {
    expect(() => hexToBytes("Z".repeat(200))).toThrow(new Error(`not lowercase hex: ${"Z".repeat(80)}`));
    expect(() => hexToBytes("0")).toThrow(new Error("not lowercase hex: 0"));
    expect(Buffer.from(hexToBytes("00ff10")).toString("hex")).toBe("00ff10");
    expect(fromHex("00FF")).toBeNull();
  });
});

describe("decodeV1Object and decodeCheckpoint", () => {
  test("JSON that is not an object is no payload of ours: null, never a throw", () => {
    for (const text of ["null", "[1]", '"x"', "1", "true", "[]"]) {
      expect(decodeV1Object(utf8(text))).toBeNull();
      expect(decodeCheckpoint(utf8(text))).toBeNull();
    }
    expect(decodeV1Object(utf8('{"v":2}'))).toBeNull();
    expect(decodeV1Object(utf8('{"v":1,"a":[]}'))).toEqual({ v: 1, a: [] });
  });

  test("each field of a CHECKPOINT payload with a wrong value makes it no checkpoint", () => {
    const good = without() as unknown as Record<string, unknown>;
    expect(decodeCheckpoint(canonicalBytes(good))).toEqual(good);
    const wrong: Array<[string, unknown]> = [
      ["cluster", 5], ["size", -1], ["size", 1.5], ["size", "6"], ["root", 7], ["root", "AB".repeat(32)], ["head", 7], ["head", "cd"],
      ["term", -2], ["term", "2"], ["signer", 1], ["ts", 0], ["sig", 1], ["sig", "ab".repeat(63)], ["subjects_root", "zz"], ["subjects_root", 1],
    ];
    for (const [k, v] of wrong) expect([k, v, decodeCheckpoint(canonicalBytes({ ...good, [k]: v }))]).toEqual([k, v, null]);
    const signed = withSubjects();
    expect(decodeCheckpoint(canonicalBytes(signed))).toEqual(signed);
  });
});

describe("checkpoint views with and without subjects_root", () => {
  test("checkpointViewKeysProblem: every view key, subjects_root optional, nothing else", () => {
    const view = { ...without(), index: 7 } as Record<string, unknown>;
    expect(checkpointViewKeysProblem(view, "the view")).toBeNull();
    expect(checkpointViewKeysProblem({ ...view, subjects_root: "ef".repeat(32) }, "the view")).toBeNull();
    expect(checkpointViewKeysProblem({ ...view, extra: 1 }, "the view")).toBe('the view has an unexpected key "extra"');
    const { sig: _sig, ...noSig } = view;
    expect(checkpointViewKeysProblem(noSig, "the view")).toBe("the view has no sig");
  });

  test("a trust file pins a checkpoint's own fields: subjects_root kept when it signs one, nothing a stored row adds", () => {
    const config = { v: 1 as const, voters: [{ id: "n1", address: "127.0.0.1:1", public_key: pubHex() }], learners: [] };
    const signed = withSubjects();
    const pinned = makeTrustFile("edges", config, { ...signed, index: 7, extra: "row" } as PinnedCheckpoint).checkpoint;
    expect(pinned).toEqual({ ...signed, index: 7 });
    expect(ind.verifyCheckpointSig(pinned as ind.CheckpointPayload, pubHex())).toBe(true);
    const plain = makeTrustFile("edges", config, { ...without(), index: 7 }).checkpoint;
    expect(plain).toEqual({ ...without(), index: 7 });
    expect(Object.keys(plain ?? {})).not.toContain("subjects_root");
  });

  test("checkpointFromValue keeps subjects_root (the signature covers it) and says why a malformed one is refused", () => {
    const signed = withSubjects();
    const value = { ...signed, index: 7 };
    expect(checkpointFromValue(value, "edges")).toEqual(value);
    expect(parseCheckpointFile(JSON.stringify(value))).toEqual(value);
    expect(ind.verifyCheckpointSig(checkpointFromValue(value) as ind.CheckpointPayload, pubHex())).toBe(true);
    expect(checkpointFromValue({ ...without(), index: 7 })).toEqual({ ...without(), index: 7 });
    expect(checkpointFromValue({ ...value, root: "no" })).toBe("the checkpoint is not a well-formed signed checkpoint {v:1, cluster, size, root, head, term, signer, ts, sig}");
    expect(checkpointFromValue({ ...value, subjects_root: "no" })).toBe("the checkpoint is not a well-formed signed checkpoint {v:1, cluster, size, root, head, term, signer, ts, sig}");
    expect(checkpointFromValue({ ...value, index: 8 })).toBe("the checkpoint's index must be its size + 1 (7)");
    expect(checkpointFromValue(value, "other")).toBe("the checkpoint is of cluster edges, the trust file pins other");
  });
});

describe("B64: canonical padded base64 (RFC 4648 section 4)", () => {
  test("whole quanta, and one or two bytes padded; nothing else", () => {
    for (const ok of ["", "AAAA", "AA==", "AAA=", "QUJD", "QUI=", "QQ==", "+/+/", "AAAAAA=="]) expect([ok, B64.test(ok)]).toEqual([ok, true]);
    for (const bad of ["A", "AA", "AAA", "AAAAA=", "A===", "AAAA=", "!!!=", "AA!=", "AA=A", "AAA==", " AAA", "AAAA\n"]) expect([bad, B64.test(bad)]).toEqual([bad, false]);
  });
});

describe("decompose: a range as maximal aligned perfect subtrees, left to right", () => {
  test("exact pieces for ranges from 0 and from inside the tree", () => {
    expect(decompose(0, 1)).toEqual([{ level: 0, index: 0 }]);
    expect(decompose(0, 6)).toEqual([{ level: 2, index: 0 }, { level: 1, index: 2 }]);
    expect(decompose(0, 8)).toEqual([{ level: 3, index: 0 }]);
    expect(decompose(5, 13)).toEqual([{ level: 0, index: 5 }, { level: 1, index: 3 }, { level: 2, index: 2 }, { level: 0, index: 12 }]);
    expect(decompose(4, 4)).toEqual([]);
  });

  test("every range up to 40: pieces are aligned, contiguous, cover it exactly and are the fewest such", () => {
    for (let begin = 0; begin < 40; begin++) {
      for (let end = begin; end <= 40; end++) {
        const pieces = decompose(begin, end);
        let pos = begin;
        for (const { level, index } of pieces) {
          const size = 2 ** level;
          expect([begin, end, index * size]).toEqual([begin, end, pos]);
          // Maximal: the next larger aligned subtree at pos would not fit or not be aligned.
          expect([begin, end, pos % (size * 2) !== 0 || pos + size * 2 > end]).toEqual([begin, end, true]);
          pos += size;
        }
        expect([begin, end, pos]).toEqual([begin, end, end]);
      }
    }
  });
});
