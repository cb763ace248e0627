// The small format modules of src/ledger, each edge checked against an independent statement
// (node:crypto, Buffer, test/support/independent.ts): bytes, canonical, config, keys, entry, record.
import { createPrivateKey, createPublicKey, sign as cryptoSign } from "node:crypto";
import { bytesEqual, concatBytes, fromHex, fromUtf8, hexToBytes, toHex, u64be, utf8 } from "../../src/ledger/bytes";
import { canonicalBytes, canonicalJson, decodeV1Object } from "../../src/ledger/canonical";
import { decodeConfig, encodeConfig, MemberInfo } from "../../src/ledger/config";
import { generateKeyPair, publicKeyOf, sign, verifySignature } from "../../src/ledger/keys";
import { ENTRY_KIND_NAMES, Entry, EntryKind, chainEntry, genesisHash, isEntryKind, kindName } from "../../src/ledger/entry";
import { checkpointMessage, decodeCheckpoint, encodeCheckpoint, signCheckpoint, verifyCheckpointSignature } from "../../src/ledger/checkpoint";
import { applyEntry, MemoryState, stateRoot, stateRootSteps, UnappliableRecord } from "../../src/ledger/state-machine";
import { codePoints, decodeRecord, encodeRecord, parseRecordPayload, RECORD_TEXT_MAX, RecordPayload, requestDigest } from "../../src/ledger/record";
import { sha256, HASH_BYTES } from "../../src/ledger/hash";
import * as ind from "../support/independent";

describe("bytes", () => {
  test("toHex is Buffer's lowercase hex for every byte value", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(toHex(all)).toBe(Buffer.from(all).toString("hex"));
    expect(toHex(new Uint8Array())).toBe("");
  });

  test("fromHex round-trips every byte value and refuses anything but lowercase even-length hex", () => {
    const hex = Buffer.from(Uint8Array.from({ length: 256 }, (_, i) => 255 - i)).toString("hex");
    expect(Buffer.from(fromHex(hex) as Uint8Array).toString("hex")).toBe(hex);
    expect(fromHex("")).toEqual(new Uint8Array());
    for (const bad of ["a", "abc", "Ab", "0g", "00 ", "\n00", "00\n", "zz00"]) expect(fromHex(bad)).toBeNull();
  });

  test("hexToBytes throws on malformed hex, naming it", () => {
    expect(Buffer.from(hexToBytes("0a0b")).toString("hex")).toBe("0a0b");
    expect(() => hexToBytes("XYZ")).toThrow("not lowercase hex: XYZ");
    expect(() => hexToBytes("q".repeat(100))).toThrow(`not lowercase hex: ${"q".repeat(80)}`);
  });

  test("u64be equals Buffer.writeBigUInt64BE around the 32-bit boundary and up to 2^53-1", () => {
    for (const n of [0, 1, 255, 256, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12345, 2 ** 53 - 1]) {
      const want = Buffer.alloc(8);
      want.writeBigUInt64BE(BigInt(n));
      expect(toHex(u64be(n))).toBe(want.toString("hex"));
    }
    expect(() => u64be(-1)).toThrow("u64 out of range: -1");
    expect(() => u64be(0.5)).toThrow(RangeError);
    expect(() => u64be(2 ** 53)).toThrow(RangeError);
  });

  test("utf8 and fromUtf8 are strict UTF-8", () => {
    expect(Buffer.from(utf8("é😀")).toString("hex")).toBe(Buffer.from("é😀", "utf8").toString("hex"));
    expect(fromUtf8(Buffer.from("é😀", "utf8"))).toBe("é😀");
    expect(() => fromUtf8(new Uint8Array([0xc3]))).toThrow();
    expect(() => fromUtf8(new Uint8Array([0xff]))).toThrow();
  });

  test("bytesEqual compares length and every byte", () => {
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(bytesEqual(new Uint8Array(), new Uint8Array())).toBe(true);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3]))).toBe(false);
    expect(bytesEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2]))).toBe(false);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(bytesEqual(new Uint8Array([0, 2]), new Uint8Array([1, 2]))).toBe(false);
  });

  test("concatBytes is Buffer.concat", () => {
    const parts = [new Uint8Array([1]), new Uint8Array(), new Uint8Array([2, 3]), new Uint8Array([4, 5, 6])];
    expect(Buffer.from(concatBytes(...parts)).toString("hex")).toBe(Buffer.concat(parts).toString("hex"));
    expect(concatBytes().length).toBe(0);
  });
});

describe("hash", () => {
  test("sha256 of parts is node:crypto's SHA-256 of their concatenation", () => {
    expect(HASH_BYTES).toBe(32);
    expect(toHex(sha256())).toBe(ind.sha256().toString("hex"));
    const a = Buffer.from("abc");
    const b = Buffer.from("def");
    expect(toHex(sha256(a, b))).toBe(ind.sha256(Buffer.from("abcdef")).toString("hex"));
  });
});

describe("canonical", () => {
  test("canonicalJson equals the independent RFC 8785 form", () => {
    const v = { b: [1, "x", null, true], a: { z: 1.5, y: -0, "é": "\u2028" }, "": 0 };
    expect(canonicalJson(v)).toBe(ind.canonicalJson(v));
    expect(Buffer.from(canonicalBytes(v)).toString("utf8")).toBe(ind.canonicalJson(v));
  });

  test("canonicalJson throws on values with no JSON form", () => {
    expect(() => canonicalJson(undefined)).toThrow(new TypeError("value has no JSON form"));
  });

  test("decodeV1Object: a v:1 object, or null", () => {
    expect(decodeV1Object(Buffer.from('{"v":1,"x":2}'))).toEqual({ v: 1, x: 2 });
    for (const bad of ['{"v":2}', '{"x":1}', '{"v":"1"}', "[1]", '[{"v":1}]', "null", "1", '"v"', "", "{", '{"v":1,"v":1}', '{"v":1e400}']) {
      expect(decodeV1Object(Buffer.from(bad))).toBeNull();
    }
    expect(decodeV1Object(new Uint8Array([0x7b, 0xff, 0x7d]))).toBeNull();
  });
});

describe("config", () => {
  const m = (id: string, fill: number): MemberInfo => ({ id, address: `127.0.0.1:${fill}`, public_key: Buffer.alloc(32, fill).toString("hex") });

  test("encodeConfig is canonical JSON with members sorted by id and only their three fields", () => {
    const extra = { ...m("b", 2), extra: 1 } as MemberInfo;
    const bytes = encodeConfig({ v: 1, voters: [m("c", 3), extra, m("a", 1)], learners: [m("z", 9), m("y", 8)] });
    expect(Buffer.from(bytes).toString("utf8")).toBe(
      ind.canonicalJson({ v: 1, voters: [m("a", 1), m("b", 2), m("c", 3)], learners: [m("y", 8), m("z", 9)] }),
    );
    expect(decodeConfig(bytes)).toEqual({ v: 1, voters: [m("a", 1), m("b", 2), m("c", 3)], learners: [m("y", 8), m("z", 9)] });
  });

  test("equal ids keep their order (the comparator says 0)", () => {
    const bytes = encodeConfig({ v: 1, voters: [m("a", 2), m("a", 1)], learners: [] });
    // decodeConfig refuses duplicate ids (test/ledger/config.test.ts), so read the bytes directly.
    const parsed = JSON.parse(Buffer.from(bytes).toString("utf8")) as { voters: MemberInfo[] };
    expect(parsed.voters.map((x) => x.public_key)).toEqual([m("a", 2).public_key, m("a", 1).public_key]);
  });

  test.each([
    ["another version", { v: 2, voters: [], learners: [] }],
    ["voters not an array", { v: 1, voters: {}, learners: [] }],
    ["learners not an array", { v: 1, voters: [], learners: "x" }],
    ["no learners", { v: 1, voters: [] }],
    ["a member that is null", { v: 1, voters: [null], learners: [] }],
    ["a member that is a string", { v: 1, voters: ["n1"], learners: [] }],
    ["an empty id", { v: 1, voters: [{ ...m("a", 1), id: "" }], learners: [] }],
    ["a numeric id", { v: 1, voters: [{ ...m("a", 1), id: 7 }], learners: [] }],
    ["no address", { v: 1, voters: [{ id: "a", public_key: m("a", 1).public_key }], learners: [] }],
    ["a short key", { v: 1, voters: [{ ...m("a", 1), public_key: "ab" }], learners: [] }],
    ["an uppercase key", { v: 1, voters: [{ ...m("a", 1), public_key: "AB".repeat(32) }], learners: [] }],
    ["a key with a suffix", { v: 1, voters: [{ ...m("a", 1), public_key: `${"ab".repeat(32)}x` }], learners: [] }],
    ["a numeric key", { v: 1, voters: [{ ...m("a", 1), public_key: 1 }], learners: [] }],
    ["a bad learner", { v: 1, voters: [m("a", 1)], learners: [{ id: "" }] }],
  ])("decodeConfig refuses %s", (_name, value) => {
    expect(decodeConfig(Buffer.from(ind.canonicalJson(value)))).toBeNull();
  });

  test("decodeConfig refuses bytes that are not a v1 object", () => {
    expect(decodeConfig(Buffer.from("[]"))).toBeNull();
  });
});

describe("keys", () => {
  const seed = Buffer.alloc(32, 42);
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const nodePriv = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  const spki = createPublicKey(nodePriv).export({ format: "der", type: "spki" });
  const nodePub = spki.subarray(spki.length - 32);

  test("a seeded key pair is node:crypto's Ed25519 key pair of that seed", () => {
    const kp = generateKeyPair(seed);
    expect(toHex(kp.publicKey)).toBe(nodePub.toString("hex"));
    expect(toHex(kp.secretKey)).toBe(seed.toString("hex"));
    expect(toHex(publicKeyOf(seed))).toBe(nodePub.toString("hex"));
  });

  test("a random key pair differs each time and signs verifiably", () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    expect(toHex(a.secretKey)).not.toBe(toHex(b.secretKey));
    const msg = Buffer.from("m");
    expect(verifySignature(sign(msg, a.secretKey), msg, a.publicKey)).toBe(true);
  });

  test("signatures equal node:crypto's (Ed25519 is deterministic) and verify only for their message and key", () => {
    const msg = Buffer.from("resonetics");
    const sig = sign(msg, seed);
    expect(toHex(sig)).toBe(cryptoSign(null, msg, nodePriv).toString("hex"));
    expect(verifySignature(sig, msg, nodePub)).toBe(true);
    expect(verifySignature(sig, Buffer.from("resonetic5"), nodePub)).toBe(false);
    expect(verifySignature(sig, msg, generateKeyPair(Buffer.alloc(32, 1)).publicKey)).toBe(false);
  });

  test("malformed signatures and keys are false, never a throw", () => {
    const msg = Buffer.from("x");
    const sig = sign(msg, seed);
    expect(verifySignature(sig.subarray(0, 63), msg, nodePub)).toBe(false);
    expect(verifySignature(Buffer.concat([sig, Buffer.from([0])]), msg, nodePub)).toBe(false);
    expect(verifySignature(sig, msg, nodePub.subarray(0, 31))).toBe(false);
    expect(verifySignature(sig, msg, Buffer.concat([nodePub, Buffer.from([0])]))).toBe(false);
    expect(verifySignature(sig, msg, Buffer.alloc(32, 0xff))).toBe(false); // not a curve point
    expect(verifySignature(Buffer.alloc(64, 0xff), msg, nodePub)).toBe(false); // s out of range
  });
});

describe("entry kinds", () => {
  test("names and the kind range 0..3", () => {
    expect(ENTRY_KIND_NAMES).toEqual(["noop", "record", "config", "checkpoint"]);
    expect([0, 1, 2, 3].map((k) => kindName(k as EntryKind))).toEqual(["noop", "record", "config", "checkpoint"]);
    expect([EntryKind.Noop, EntryKind.Record, EntryKind.Config, EntryKind.Checkpoint]).toEqual([0, 1, 2, 3]);
    for (const k of [0, 1, 2, 3]) expect(isEntryKind(k)).toBe(true);
    for (const k of [-1, 4, 0.5, Number.NaN, 255]) expect(isEntryKind(k)).toBe(false);
  });
});

describe("record payloads", () => {
  const TS = "2026-01-01T00:00:00Z";
  const base = { v: 1, type: "t", subject: "s", data: null, ts: TS };
  const parse = (value: Record<string, unknown>) => parseRecordPayload(Buffer.from(ind.canonicalJson(value)));
  const digest = "ab".repeat(32);

  test("requestDigest is SHA-256 of the canonical request, actor only when present", () => {
    const req = { type: "t", subject: "s", data: { x: [1] } };
    expect(requestDigest(req)).toBe(ind.sha256(Buffer.from(ind.canonicalJson(req))).toString("hex"));
    const withActor = { ...req, actor: "me" };
    expect(requestDigest(withActor)).toBe(ind.sha256(Buffer.from(ind.canonicalJson(withActor))).toString("hex"));
    expect(requestDigest({ ...req, actor: undefined })).toBe(requestDigest(req));
  });

  test("encodeRecord is canonical JSON and round-trips", () => {
    const p: RecordPayload = { ...base, v: 1, actor: "a", idempotency_key: "k", request_digest: digest };
    expect(Buffer.from(encodeRecord(p)).toString("utf8")).toBe(ind.canonicalJson(p));
    expect(parseRecordPayload(encodeRecord(p))).toEqual(p);
    expect(decodeRecord(encodeRecord(p))).toEqual(p);
  });

  test("codePoints counts surrogate pairs once and lone surrogates each", () => {
    expect(codePoints("")).toBe(0);
    expect(codePoints("abc")).toBe(3);
    expect(codePoints("😀😀")).toBe(2);
    expect(codePoints("\ud83d")).toBe(1); // a high surrogate at the end
    expect(codePoints("\ud83da")).toBe(2); // a high surrogate before a non-surrogate
    expect(codePoints("\ude00\ud83d")).toBe(2); // low then high: two
    expect(codePoints("\udbff\udfff")).toBe(1); // the last pair of the range
    expect(codePoints("\ud800\udc00")).toBe(1); // the first pair of the range
    expect(codePoints("\ud7ff\udc00")).toBe(2); // below the high range
    expect(codePoints("\udc00\udc00")).toBe(2);
    expect(codePoints("\ud800\ue000")).toBe(2); // above the low range
    expect(codePoints("\ud800\udbff")).toBe(2); // a high followed by a high
  });

  test.each(["type", "subject", "actor"])("%s: 1..200 code points", (key) => {
    expect(parse({ ...base, [key]: "x".repeat(RECORD_TEXT_MAX) })[key as "type"]).toHaveLength(200);
    expect(parse({ ...base, [key]: "x" })[key as "type"]).toBe("x");
    expect(() => parse({ ...base, [key]: "x".repeat(201) })).toThrow(`payload/${key} must be 1..200 characters (code points), has 201`);
    expect(() => parse({ ...base, [key]: "" })).toThrow(`payload/${key} must be 1..200 characters (code points), has 0`);
    expect(() => parse({ ...base, [key]: 5 })).toThrow(`payload/${key} must be a string`);
  });

  test("type and subject are required, actor is not", () => {
    const { type: _t, ...noType } = base;
    const { subject: _s, ...noSubject } = base;
    expect(() => parse(noType)).toThrow("payload/type must be a string");
    expect(() => parse(noSubject)).toThrow("payload/subject must be a string");
    expect(parse(base).actor).toBeUndefined();
  });

  test("idempotency keys: up to 401 code points, with their digest", () => {
    const k401 = "k".repeat(401);
    expect(parse({ ...base, idempotency_key: k401, request_digest: digest }).idempotency_key).toBe(k401);
    expect(() => parse({ ...base, idempotency_key: `${k401}k`, request_digest: digest })).toThrow("must be 1..401 characters");
    expect(() => parse({ ...base, idempotency_key: "", request_digest: digest })).toThrow("payload/idempotency_key must be 1..401");
    expect(() => parse({ ...base, idempotency_key: "k" })).toThrow("payload/request_digest goes with idempotency_key");
    expect(() => parse({ ...base, request_digest: digest })).toThrow("payload/request_digest goes with idempotency_key");
    expect(() => parse({ ...base, idempotency_key: "k", request_digest: "AB".repeat(32) })).toThrow("payload/request_digest must be 64 lowercase hex digits");
    expect(() => parse({ ...base, idempotency_key: "k", request_digest: "ab".repeat(31) })).toThrow("must be 64 lowercase hex digits");
    expect(() => parse({ ...base, idempotency_key: "k", request_digest: 7 })).toThrow("must be 64 lowercase hex digits");
    expect(() => parse({ ...base, idempotency_key: "k", request_digest: `${digest}0` })).toThrow("must be 64 lowercase hex digits");
  });

  test.each([
    ["2026-01-01T00:00:00Z", true],
    ["2026-01-01T00:00:00.1Z", true],
    ["2026-01-01T00:00:00.123456789Z", true],
    ["2026-01-01T00:00:00.1234567890Z", false],
    ["2026-01-01T00:00:00.Z", false],
    ["2026-01-01T00:00:00", false],
    ["2026-01-01 00:00:00Z", false],
    ["x2026-01-01T00:00:00Z", false],
    ["2026-01-01T00:00:00Zx", false],
    ["2026-01-01T00:00:00+01:00", false],
  ])("ts %s accepted: %p", (ts, ok) => {
    if (ok) expect(parse({ ...base, ts }).ts).toBe(ts);
    else expect(() => parse({ ...base, ts })).toThrow("payload/ts must be an RFC 3339 UTC time");
  });

  test("ts must be a string", () => {
    expect(() => parse({ ...base, ts: 1 })).toThrow("payload/ts must be an RFC 3339 UTC time");
  });

  test("v must be 1, data is required (null is a value), no other field, an object only", () => {
    expect(() => parse({ ...base, v: 2 })).toThrow("payload/v must be 1");
    const { data: _d, ...noData } = base;
    expect(() => parse(noData)).toThrow("payload/data is required");
    expect(parse(base).data).toBeNull();
    expect(() => parse({ ...base, other: 1 })).toThrow("payload/other is not a field of a record");
    for (const text of ["[]", "null", "1", '"s"']) expect(() => parseRecordPayload(Buffer.from(text))).toThrow("payload must be an object");
    expect(() => parseRecordPayload(Buffer.from('{"v":1, "type":"t"}'))).toThrow("payload is not in canonical form (RFC 8785)");
  });

  test("the errors are schema violations with a JSON path", () => {
    let caught: unknown;
    try {
      parse({ ...base, v: 2 });
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: "schema_violation", message: "payload/v must be 1" });
  });

  test("decodeRecord: null for a payload that is not a record", () => {
    expect(decodeRecord(Buffer.from("{}"))).toBeNull();
    expect(decodeRecord(Buffer.from("nope"))).toBeNull();
  });
});

describe("checkpoint payloads", () => {
  const seed = Buffer.alloc(32, 11);
  const kp = ind.keyPair(seed);
  const body = { v: 1 as const, cluster: "c", size: 4, root: "aa".repeat(32), head: "bb".repeat(32), term: 2, signer: "n1", ts: "t" };
  let cp: ReturnType<typeof signCheckpoint>;
  beforeEach(() => { cp = signCheckpoint(body, kp.secretKey); });

  test("the signature is node:crypto-verifiable over the independent message; encode is canonical JSON", () => {
    expect(ind.verifyCheckpointSig(cp, toHex(kp.publicKey))).toBe(true);
    expect(Buffer.from(checkpointMessage(body)).toString("hex")).toBe(ind.checkpointMessage({ ...body, sig: "" }).toString("hex"));
    expect(Buffer.from(encodeCheckpoint(cp)).toString("utf8")).toBe(ind.canonicalJson(cp));
    expect(decodeCheckpoint(encodeCheckpoint(cp))).toEqual(cp);
    expect(decodeCheckpoint(Buffer.from(ind.canonicalJson({ ...cp, size: 0, term: 0 })))).toEqual({ ...cp, size: 0, term: 0 });
  });

  test.each([
    ["v", 2], ["cluster", 1], ["size", -1], ["size", 1.5], ["size", "4"], ["root", "aa"], ["root", "AA".repeat(32)], ["root", 1],
    ["head", `${"bb".repeat(32)}0`], ["head", null], ["term", -1], ["term", 0.5], ["signer", 1], ["ts", 1], ["sig", "ab".repeat(63)],
    ["sig", `${"ab".repeat(64)}a`], ["sig", "AB".repeat(64)], ["sig", 7],
  ])("decodeCheckpoint refuses %s = %p", (key, value) => {
    expect(decodeCheckpoint(Buffer.from(ind.canonicalJson({ ...cp, [key]: value })))).toBeNull();
  });

  test("verifyCheckpointSignature is false for a key or signature that is not hex, or a different message", () => {
    expect(verifyCheckpointSignature(cp, toHex(kp.publicKey))).toBe(true);
    expect(verifyCheckpointSignature(cp, "XX")).toBe(false);
    expect(verifyCheckpointSignature({ ...cp, sig: "zz" }, toHex(kp.publicKey))).toBe(false);
    expect(verifyCheckpointSignature({ ...cp, ts: "u" }, toHex(kp.publicKey))).toBe(false);
    expect(verifyCheckpointSignature({ ...cp, cluster: "d" }, toHex(kp.publicKey))).toBe(false);
    expect(verifyCheckpointSignature({ ...cp, head: "cc".repeat(32) }, toHex(kp.publicKey))).toBe(false);
    expect(verifyCheckpointSignature({ ...cp, term: 3 }, toHex(kp.publicKey))).toBe(false);
    expect(verifyCheckpointSignature({ ...cp, signer: "n2" }, toHex(kp.publicKey))).toBe(false);
  });
});

describe("apply results", () => {
  const TS = "2026-01-01T00:00:00Z";
  const entry = (index: number, payload: Record<string, unknown> | null, prev: Uint8Array): Entry =>
    chainEntry(index, 3, payload === null ? EntryKind.Noop : EntryKind.Record, prev, payload === null ? new Uint8Array() : Buffer.from(ind.canonicalJson(payload)));

  test("a record returns its index, term, hash and the subject's new version; a retry returns the original and its digest", () => {
    const s = new MemoryState();
    const e1 = entry(1, { v: 1, type: "t", subject: "a", data: 1, ts: TS, idempotency_key: "k", request_digest: "cd".repeat(32) }, genesisHash("x"));
    const r1 = applyEntry(s, e1);
    expect(r1).toEqual({ kind: "record", index: 1, term: 3, hash: e1.hash, version: 1 });
    const e2 = entry(2, { v: 1, type: "t", subject: "a", data: 2, ts: TS, idempotency_key: "k", request_digest: "ef".repeat(32) }, e1.hash);
    const r2 = applyEntry(s, e2);
    expect(r2).toEqual({ kind: "duplicate", original: { key: "k", digest: "cd".repeat(32), index: 1, term: 3, hash: e1.hash }, digest: "ef".repeat(32) });
    const e3 = entry(3, { v: 1, type: "t", subject: "a", data: 3, ts: TS }, e2.hash);
    expect(applyEntry(s, e3)).toEqual({ kind: "record", index: 3, term: 3, hash: e3.hash, version: 2 });
    expect(s.getSubject("a")).toEqual({ subject: "a", version: 2, lastIndex: 3, head: ind.subjectHead(ind.subjectHead(ind.SUBJECT_HEAD_ZERO, e1.hash), e3.hash) });
    expect(s.records.get("a")).toEqual([1, 3]);
    expect(s.getDedup("k")?.digest).toBe("cd".repeat(32));
    for (const kind of [EntryKind.Noop, EntryKind.Config, EntryKind.Checkpoint]) {
      expect(applyEntry(s, { ...e3, kind, payload: Buffer.from("not a record") })).toEqual({ kind: "none" });
    }
  });

  test("an unappliable record names its index and why", () => {
    const e = chainEntry(7, 1, EntryKind.Record, genesisHash("x"), Buffer.from('{"v":1}'));
    let caught: unknown;
    try {
      applyEntry(new MemoryState(), e);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UnappliableRecord);
    expect(caught).toMatchObject({ name: "UnappliableRecord", index: 7, message: "RECORD entry 7 does not apply: payload/type must be a string" });
  });

  test("stateRoot equals the independent state_root; stateRootSteps yields once per row", () => {
    const subjects = [{ subject: "b", version: 1, head: Buffer.alloc(32, 1), lastIndex: 2 }, { subject: "a", version: 3, head: Buffer.alloc(32, 2), lastIndex: 5 }];
    const dedup = [{ key: "z", digest: "d", index: 2, term: 1, hash: Buffer.alloc(32, 3) }, { key: "y", digest: "", index: 5, term: 2, hash: Buffer.alloc(32, 4) }];
    expect(toHex(stateRoot(subjects, dedup))).toBe(ind.stateRootOf(subjects, dedup).toString("hex"));
    expect(toHex(stateRoot([], []))).toBe(ind.sha256().toString("hex"));
    const steps = stateRootSteps(subjects, dedup);
    let yields = 0;
    let r = steps.next();
    for (; r.done !== true && yields < 100; r = steps.next()) yields++;
    expect(yields).toBe(4);
    expect(toHex(r.value as Uint8Array)).toBe(ind.stateRootOf(subjects, dedup).toString("hex"));
  });
});
