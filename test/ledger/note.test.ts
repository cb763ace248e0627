// C2SP signed notes (src/ledger/note.ts), in process. Expected bytes come from published vectors,
// not from src: the key, text and signed note of Go's golang.org/x/mod/sumdb/note (ExampleSign, the
// "PeterNeumann" key) and the example of c2sp.org/signed-note ("example.com/foo"). Ed25519 is
// deterministic, so signing the Go text with the Go key must give the Go note byte for byte.
import { checkpointNoteBody, noteKeyId, noteOrigin, noteProblem, signNote } from "../../src/ledger/note";
import { generateKeyPair } from "../../src/ledger/keys";
import * as ind from "../support/independent";

/** A vkey/skey's key material: base64 of (algorithm byte 0x01 || 32 bytes). */
const keyBytes = (b64: string): Buffer => {
  const raw = Buffer.from(b64, "base64");
  expect(raw[0]).toBe(0x01); // Ed25519
  return raw.subarray(1);
};

// golang.org/x/mod/sumdb/note: note_test.go / example_test.go
const GO_NAME = "PeterNeumann";
const GO_KEY_HASH = "c74f20a3"; // from the vkey "PeterNeumann+c74f20a3+ARpc2…"
const GO_PUB = keyBytes("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
const GO_SEED = keyBytes("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz");
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_BLOB = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";
const GO_NOTE = `${GO_TEXT}\n\u2014 ${GO_NAME} ${GO_BLOB}\n`;

// c2sp.org/signed-note: the example verifier key "example.com/foo+530d903a+AekyeRrm…" and its note
const C2SP_NAME = "example.com/foo";
const C2SP_KEY_HASH = "530d903a";
const C2SP_PUB = keyBytes("AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k");
const C2SP_NOTE =
  "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** A signature line for `name` with the given raw blob bytes. */
const sigLine = (name: string, blob: Uint8Array): string => `\u2014 ${name} ${Buffer.from(blob).toString("base64")}`;

describe("published vectors", () => {
  test("the key id is SHA-256(name || 0x0A || 0x01 || key)[:4]: both published key hashes", () => {
    expect(hex(noteKeyId(GO_NAME, GO_PUB))).toBe(GO_KEY_HASH);
    expect(hex(noteKeyId(C2SP_NAME, C2SP_PUB))).toBe(C2SP_KEY_HASH);
    // and the same from the formula, computed independently
    expect(hex(noteKeyId(GO_NAME, GO_PUB))).toBe(ind.sha256(Buffer.from(GO_NAME), Buffer.from([0x0a, 0x01]), GO_PUB).subarray(0, 4).toString("hex"));
  });

  test("signing Go's example text with Go's example key gives Go's signed note byte for byte", () => {
    expect(hex(generateKeyPair(GO_SEED).publicKey)).toBe(hex(GO_PUB));
    expect(signNote(GO_TEXT, GO_NAME, GO_SEED, GO_PUB)).toBe(GO_NOTE);
  });

  test("both published notes verify with their keys", () => {
    expect(noteProblem(GO_NOTE, GO_NAME, GO_PUB)).toBeNull();
    expect(noteProblem(C2SP_NOTE, C2SP_NAME, C2SP_PUB)).toBeNull();
  });

  test("a published note does not verify under the other key, or under another name", () => {
    expect(noteProblem(GO_NOTE, GO_NAME, C2SP_PUB)).toBe(`no signature line by ${GO_NAME} with key id ${hex(noteKeyId(GO_NAME, C2SP_PUB))}`);
    expect(noteProblem(C2SP_NOTE, "example.com/bar", C2SP_PUB)).toBe(`no signature line by example.com/bar with key id ${hex(noteKeyId("example.com/bar", C2SP_PUB))}`);
  });
});

describe("checkpoint note bodies (c2sp.org/tlog-checkpoint)", () => {
  const root = ind.sha256(Buffer.from("root"));

  test("origin, decimal size and standard base64 root, each line ending in a newline", () => {
    expect(noteOrigin("c1")).toBe("resonetics/c1");
    expect(checkpointNoteBody("resonetics/c1", 42, root.toString("hex"))).toBe(`resonetics/c1\n42\n${root.toString("base64")}\n`);
    expect(checkpointNoteBody("o", 0, "00".repeat(32))).toBe(`o\n0\n${"A".repeat(43)}=\n`);
  });

  test.each([
    ["31 bytes", "ab".repeat(31)],
    ["33 bytes", "ab".repeat(33)],
    ["uppercase hex", "AB".repeat(32)],
    ["not hex", "zz".repeat(32)],
    ["empty", ""],
  ])("a root of %s is refused", (_name, rootHex) => {
    expect(() => checkpointNoteBody("o", 1, rootHex)).toThrow(new RangeError("root must be 64 lowercase hex digits"));
  });

  test.each([["empty", ""], ["a space", "a b"], ["a newline", "a\nb"], ["a tab", "a\tb"], ["a plus", "a+b"], ["a leading plus", "+a"]])(
    "an origin with %s is refused",
    (_name, origin) => {
      expect(() => checkpointNoteBody(origin, 1, root.toString("hex"))).toThrow(new RangeError("origin must be non-empty, with no whitespace and no '+'"));
    },
  );

  test("a signed checkpoint note verifies with node:crypto and carries the key id of its origin", () => {
    const k = generateKeyPair(new Uint8Array(32).fill(3));
    const origin = noteOrigin("c1");
    const body = checkpointNoteBody(origin, 7, root.toString("hex"));
    const note = signNote(body, origin, k.secretKey, k.publicKey);
    expect(note.startsWith(`${body}\n\u2014 ${origin} `)).toBe(true);
    expect(note.endsWith("\n")).toBe(true);
    const blob = Buffer.from(note.slice(body.length + 1 + `\u2014 ${origin} `.length, -1), "base64");
    expect(blob.length).toBe(68);
    expect(blob.subarray(0, 4).toString("hex")).toBe(ind.sha256(Buffer.from(origin), Buffer.from([0x0a, 0x01]), k.publicKey).subarray(0, 4).toString("hex"));
    expect(ind.verifyEd25519(hex(k.publicKey), Buffer.from(body, "utf8"), blob.subarray(4).toString("hex"))).toBe(true);
    expect(noteProblem(note, origin, k.publicKey)).toBeNull();
  });
});

describe("noteProblem says why a note does not verify", () => {
  const goSig = Buffer.from(GO_BLOB, "base64");
  let goKeyId: Uint8Array;
  beforeEach(() => { goKeyId = noteKeyId(GO_NAME, GO_PUB); }); // per test: nothing outside a test may reach src
  const noLine = `no signature line by ${GO_NAME} with key id ${GO_KEY_HASH}`;

  test("no blank line between the body and the signatures", () => {
    expect(noteProblem(GO_TEXT, GO_NAME, GO_PUB)).toBe("no blank line between the body and the signatures");
    expect(noteProblem(GO_NOTE.replace("\n\n", "\n"), GO_NAME, GO_PUB)).toBe("no blank line between the body and the signatures");
  });

  test("a signature block that does not end with a newline", () => {
    expect(noteProblem(GO_NOTE.slice(0, -1), GO_NAME, GO_PUB)).toBe("the signature block does not end with a newline");
    expect(noteProblem(`${GO_TEXT}\n`, GO_NAME, GO_PUB)).toBe("the signature block does not end with a newline");
  });

  test("a signature line that does not start with an em dash and a space", () => {
    const why = 'a signature line does not start with "\u2014 "';
    expect(noteProblem(`${GO_TEXT}\n- ${GO_NAME} ${GO_BLOB}\n`, GO_NAME, GO_PUB)).toBe(why);
    expect(noteProblem(`${GO_TEXT}\n\u2014${GO_NAME} ${GO_BLOB}\n`, GO_NAME, GO_PUB)).toBe(why);
    // an empty line in the signature block is a line without the prefix (a second blank line, say)
    expect(noteProblem(`${GO_TEXT}\n\n\u2014 ${GO_NAME} ${GO_BLOB}\n`, GO_NAME, GO_PUB)).toBe(why);
  });

  test("a changed body byte: the line is ours but the signature does not verify", () => {
    const why = "the signature does not verify over the note body";
    expect(noteProblem(GO_NOTE.replace("cryptography", "Cryptography"), GO_NAME, GO_PUB)).toBe(why);
    // the signed text is the body with its final newline: without it, it is another text
    expect(noteProblem(`${GO_TEXT.slice(0, -1)} \n\n\u2014 ${GO_NAME} ${GO_BLOB}\n`, GO_NAME, GO_PUB)).toBe(why);
    const flipped = Buffer.from(goSig);
    flipped[4 + 10] ^= 1;
    expect(noteProblem(`${GO_TEXT}\n${sigLine(GO_NAME, flipped)}\n`, GO_NAME, GO_PUB)).toBe(why);
  });

  test("lines of other signers, or not quite ours, are skipped: only a line by origin with the key id counts", () => {
    const otherKeyId = Buffer.from(goSig);
    otherKeyId[0] ^= 1;
    const skipped: Array<[string, string]> = [
      ["another name", `\u2014 Other ${GO_BLOB}`],
      ["a name that only starts like ours", `\u2014 ${GO_NAME}x ${GO_BLOB}`],
      ["no blob", `\u2014 ${GO_NAME}`],
      ["a third field", `\u2014 ${GO_NAME} ${GO_BLOB} extra`],
      ["two spaces", `\u2014 ${GO_NAME}  ${GO_BLOB}`],
      ["a blob that is not canonical base64", `\u2014 ${GO_NAME} ${GO_BLOB.slice(0, -1)}`],
      ["a blob one byte short", sigLine(GO_NAME, goSig.subarray(0, 67))],
      ["a blob one byte long", sigLine(GO_NAME, Buffer.concat([goSig, Buffer.from([0])]))],
      ["another key id", sigLine(GO_NAME, otherKeyId)],
    ];
    for (const [what, line] of skipped) {
      expect([what, noteProblem(`${GO_TEXT}\n${line}\n`, GO_NAME, GO_PUB)]).toEqual([what, noLine]);
    }
    // ... and a good line after any of them still verifies
    const all = skipped.map(([, line]) => `${line}\n`).join("");
    expect(noteProblem(`${GO_TEXT}\n${all}\u2014 ${GO_NAME} ${GO_BLOB}\n`, GO_NAME, GO_PUB)).toBeNull();
    expect(hex(goSig.subarray(0, 4))).toBe(hex(goKeyId));
  });

  test("the first line by origin with the key id decides: a bad one is not rescued by a good one after it", () => {
    const flipped = Buffer.from(goSig);
    flipped[40] ^= 1;
    const text = `${GO_TEXT}\n${sigLine(GO_NAME, flipped)}\n\u2014 ${GO_NAME} ${GO_BLOB}\n`;
    expect(noteProblem(text, GO_NAME, GO_PUB)).toBe("the signature does not verify over the note body");
  });

  test("the shortest body, one empty line, signs and verifies (the blank line then starts the text)", () => {
    const k = generateKeyPair(new Uint8Array(32).fill(14));
    const note = signNote("\n", "o", k.secretKey, k.publicKey);
    expect(note.startsWith("\n\n\u2014 o ")).toBe(true);
    expect(noteProblem(note, "o", k.publicKey)).toBeNull();
    expect(ind.verifyEd25519(hex(k.publicKey), Buffer.from("\n"), Buffer.from(note.slice(5, -1), "base64").subarray(4).toString("hex"))).toBe(true);
  });

  test("a note whose body is signed by two keys verifies under each", () => {
    const a = generateKeyPair(new Uint8Array(32).fill(11));
    const b = generateKeyPair(new Uint8Array(32).fill(12));
    const body = checkpointNoteBody("o", 3, "cd".repeat(32));
    const byA = signNote(body, "o", a.secretKey, a.publicKey);
    const byB = signNote(body, "o", b.secretKey, b.publicKey);
    const both = `${byA}${byB.slice(body.length + 1)}`;
    expect(noteProblem(both, "o", a.publicKey)).toBeNull();
    expect(noteProblem(both, "o", b.publicKey)).toBeNull();
    const c = generateKeyPair(new Uint8Array(32).fill(13));
    expect(noteProblem(both, "o", c.publicKey)).toBe(`no signature line by o with key id ${hex(noteKeyId("o", c.publicKey))}`);
  });
});
