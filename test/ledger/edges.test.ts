// Edges of the small src/ledger modules that the mutation run (npm run mutate -- ledger:small) found
// untested: hexToBytes's error, payloads that are JSON but not objects, each field of a CHECKPOINT
// payload, checkpoint views with and without subjects_root through trust files and --checkpoint
// values, and canonical padded base64. Signatures are checked with node:crypto (independent.ts).
import { createHash } from "node:crypto";
import * as ed from "@noble/ed25519";
import fc from "fast-check";
import { fromHex, hexToBytes, toHex, utf8 } from "../../src/ledger/bytes";
import { canonicalBytes, decodeV1Object } from "../../src/ledger/canonical";
import { checkpointViewKeysProblem, decodeCheckpoint, signCheckpoint, type Checkpoint } from "../../src/ledger/checkpoint";
import { configProblem, decodeConfig, encodeConfig } from "../../src/ledger/config";
import { portableEd25519, verifySignature } from "../../src/ledger/keys";
import { decompose } from "../../src/ledger/merkle";
import { codePoints } from "../../src/ledger/record";
import { decodeSnapshot } from "../../src/ledger/snapshot";
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

  test("toHex and fromHex agree with node:crypto's hex for every byte, any length (past toHex's 2 KiB scratch too), and back", () => {
    const every = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(toHex(every)).toBe(Buffer.from(every).toString("hex"));
    expect(fromHex(Buffer.from(every).toString("hex"))).toEqual(every);
    expect(toHex(new Uint8Array(0))).toBe("");
    // The scratch is reused: a long value then a short one leaves nothing of the first in the second.
    const long = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) & 255);
    expect(toHex(long)).toBe(Buffer.from(long).toString("hex"));
    expect(toHex(Uint8Array.of(0xab))).toBe("ab");
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
        const hex = Buffer.from(bytes).toString("hex");
        expect(toHex(bytes)).toBe(hex);
        expect(fromHex(hex)).toEqual(bytes);
      }),
      { numRuns: 300 },
    );
    // Anything but lowercase hex pairs is refused, whatever its length.
    for (const bad of ["0", "0g", "g0", "0G", "/0", ":0", "`0", "0@", " 00", "00 ", "é0"]) expect({ bad, v: fromHex(bad) }).toEqual({ bad, v: null });
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

// What ledger:formats (config, record, snapshot) and keys left alive.
const member = (id: string, extra: Record<string, unknown> = {}) => ({ id, address: `127.0.0.1:${id.length}`, public_key: "ab".repeat(32), ...extra });
const cfg = (voters: unknown[], learners: unknown[] = []) => ({ v: 1, voters, learners });

describe("configProblem: every rule with its reason", () => {
  test("the version: missing is named (none)", () => {
    expect(configProblem({ voters: [], learners: [] })).toBe("unsupported version (none)");
    expect(configProblem({ v: 2, voters: [], learners: [] })).toBe("unsupported version 2");
  });

  test("voters and learners must be arrays of objects, each named", () => {
    expect(configProblem({ v: 1, voters: {}, learners: [] })).toBe("voters is not an array");
    expect(configProblem({ v: 1, voters: [], learners: "x" })).toBe("learners is not an array");
    expect(configProblem(cfg([member("a")], [null]))).toBe("learners[0] is not an object");
  });

  test("ids are 1..200 code points: 200 astral characters pass, 201 do not, nor an empty id", () => {
    const reason = "voters[0].id is not a string of 1..200 characters";
    expect(configProblem(cfg([member("a".repeat(200))]))).toBeNull();
    expect(configProblem(cfg([member("\u{1F600}".repeat(200))]))).toBeNull(); // 400 UTF-16 units
    expect(configProblem(cfg([member("a".repeat(201))]))).toBe(reason);
    expect(configProblem(cfg([member("")]))).toBe(reason);
    expect(configProblem(cfg([{ ...member("a"), id: 7 }]))).toBe(reason);
  });

  test("an address that is not a string, and a public key that is not lowercase hex", () => {
    expect(configProblem(cfg([member("a", { address: 5 })]))).toBe("voters[0].address is not a string");
    expect(configProblem(cfg([member("a"), member("b", { public_key: "AB".repeat(32) })]))).toBe("voters[1].public_key is not 64 lowercase hex");
  });

  test("a right shape whose strings have no canonical bytes is refused as not I-JSON", () => {
    expect(configProblem(cfg([member("a", { address: "\ud800" })]))).toMatch(/^not I-JSON: /);
    expect(configProblem(cfg([member("a")], [member("b", { address: "x\ufdd0" })]))).toMatch(/^not I-JSON: /);
  });

  test("encodeConfig sorts members by id, whatever order they come in", () => {
    const ids = ["e", "b", "d", "a", "c"];
    const sorted = encodeConfig({ v: 1, voters: [...ids].sort().map((id) => member(id)), learners: [member("y"), member("z")] });
    const shuffled = encodeConfig({ v: 1, voters: ids.map((id) => member(id)), learners: [member("z"), member("y")] });
    expect(Buffer.from(shuffled).equals(Buffer.from(sorted))).toBe(true);
    expect(decodeConfig(shuffled)?.voters.map((m) => m.id)).toEqual(["a", "b", "c", "d", "e"]);
  });
});

describe("codePoints counts what ajv's maxLength counts", () => {
  test("surrogate pairs are one, wherever they stand", () => {
    expect(codePoints("")).toBe(0);
    expect(codePoints("\u{1F600}")).toBe(1);
    expect(codePoints("\u{1F600}\u{1F600}")).toBe(2);
    expect(codePoints("a\u{1F600}b")).toBe(3);
    expect(codePoints("é\u{10FFFF}")).toBe(2);
  });
});

describe("decodeSnapshot", () => {
  const doc = (): Record<string, unknown> => ({
    v: 1, cluster: "c", index: 3, term: 1, hash: "aa", root: "bb", compact_range: [], config_b64: "", state: {}, state_root: "cc", signer: "n1", ts: "t", sig: "dd",
  });
  test("a document with every field of its type decodes; any field missing or of another type is no snapshot", () => {
    expect(decodeSnapshot(canonicalBytes(doc()))).toEqual(doc());
    const wrong: Record<string, unknown> = {
      v: 2, cluster: 1, index: 1.5, term: "1", hash: 1, root: null, compact_range: {}, config_b64: [], state: null, state_root: 1, signer: 2, sig: 3,
    };
    for (const [k, bad] of Object.entries(wrong)) {
      expect(decodeSnapshot(canonicalBytes({ ...doc(), [k]: bad }))).toBeNull();
      const { [k]: _gone, ...rest } = doc();
      expect(decodeSnapshot(canonicalBytes(rest))).toBeNull();
    }
  });
});

describe("keys", () => {
  // RFC 8032 5.1.7 refuses an R that is not a canonical point encoding; ZIP-215 (noble's default) takes it.
  // A signer who knows its secret scalar a makes one that verifies under ZIP-215: R = the identity
  // written as y = p + 1 (non-canonical), S = k·a mod L, so that S·B = R + k·A.
  test("a signature whose R is not canonically encoded is refused, as OpenSSL refuses it (zip215: false)", () => {
    const P = 2n ** 255n - 19n;
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    const le = (b: Uint8Array): bigint => b.reduce((acc, byte, i) => acc + (BigInt(byte) << BigInt(8 * i)), 0n);
    const toLe = (n: bigint): Buffer => Buffer.from(Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn)));
    const seed = new Uint8Array(32).fill(3);
    const pair = ind.keyPair(seed);
    const h = createHash("sha512").update(seed).digest();
    h[0] &= 248; h[31] &= 127; h[31] |= 64;
    const a = le(h.subarray(0, 32));
    const message = utf8("resonetics");
    const rEnc = toLe(P + 1n);
    const k = le(createHash("sha512").update(rEnc).update(pair.publicKey).update(message).digest()) % L;
    const sig = Buffer.concat([rEnc, toLe((k * a) % L)]);
    expect(ed.verify(sig, message, pair.publicKey, { zip215: true })).toBe(true); // the vector does differ
    expect(ind.verifyEd25519(pair.publicKey.toString("hex"), message, sig.toString("hex"))).toBe(false);
    expect(portableEd25519.verify(sig, message, pair.publicKey)).toBe(false);
    expect(verifySignature(sig, message, pair.publicKey)).toBe(false);
  });

  test("the cache of key verdicts holds at most 1024 and then starts over", () => {
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const keys = require("../../src/ledger/keys") as typeof import("../../src/ledger/keys");
      const key = (i: number): Uint8Array => createHash("sha256").update(`key ${i}`).digest();
      expect(keys.keyVerdictsCached()).toBe(0);
      for (let i = 0; i < 1024; i++) keys.acceptablePublicKey(key(i));
      expect(keys.keyVerdictsCached()).toBe(1024);
      keys.acceptablePublicKey(key(5)); // known: no new entry
      expect(keys.keyVerdictsCached()).toBe(1024);
      keys.acceptablePublicKey(key(1024));
      expect(keys.keyVerdictsCached()).toBe(1);
    });
  });
});
