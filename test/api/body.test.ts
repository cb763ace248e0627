// src/api/body.ts on its own, with a stand-in request (a stream with headers) and response: which
// headers it refuses and with what reason, the limit counted over the bytes that arrive (whatever
// Content-Length said), a body cut off or failing mid-way, and that it lets go of the request's
// events once it has answered. test/api/app.test.ts sends the same cases over real sockets.
import { PassThrough } from "node:stream";
import type { NextFunction, Request, Response } from "express";
import { ijsonBody } from "../../src/api/body";
import { LedgerError } from "../../src/util/errors";

const LIMIT = 64;
const EVENTS = ["data", "end", "error", "aborted"] as const;

interface Run {
  readonly req: PassThrough & { headers: Record<string, string>; body?: unknown };
  readonly headers: Map<string, string>;
  /** Each call of next, with its argument (undefined: go on). */
  readonly nexts: unknown[];
}

function start(headers: Record<string, string>, limit = LIMIT): Run {
  const req = Object.assign(new PassThrough(), { headers });
  const set = new Map<string, string>();
  const res = { setHeader: (k: string, v: string) => void set.set(k, v) };
  const nexts: unknown[] = [];
  const next: NextFunction = (err?: unknown) => void nexts.push(err);
  ijsonBody(limit)(req as unknown as Request, res as unknown as Response, next);
  return { req, headers: set, nexts };
}

const JSON_TYPE = { "content-type": "application/json" };
/** Resolves once next has been called (the body is read on stream events). */
async function settled(run: Run): Promise<unknown> {
  for (let i = 0; i < 100 && run.nexts.length === 0; i++) await new Promise((resolve) => setImmediate(resolve));
  expect(run.nexts).toHaveLength(1);
  return run.nexts[0];
}
const listening = (run: Run): number[] => EVENTS.map((e) => run.req.listenerCount(e));

function expectError(err: unknown, code: string, message: string): void {
  expect(err).toBeInstanceOf(LedgerError);
  expect({ code: (err as LedgerError).code, message: (err as LedgerError).message }).toEqual({ code, message });
}

describe("headers", () => {
  test.each([
    "application/json", "Application/JSON", "application/json;charset=utf-8", "application/json; charset=UTF-8", 'application/json ; charset = "utf-8"',
    "application/json; charset=utf-8 ", " application/json", "application/json  ",
  ])("Content-Type %j is read", async (type) => {
    const run = start({ "content-type": type });
    run.req.end('{"a":1}');
    expect(await settled(run)).toBeUndefined();
    expect(run.req.body).toEqual({ a: 1 });
  });

  test.each([
    ["application/json; charset=latin1", "the only charset is utf-8"],
    ["application/json; charset=utf-8x", "the only charset is utf-8"],
    ["application/json;charset=utf-16", "the only charset is utf-8"],
    ["application/json ;charset=utf-7", "the only charset is utf-8"],
    ["xapplication/json; charset=utf-8", "Content-Type must be application/json"],
    ["application/jsonx; charset=utf-8", "Content-Type must be application/json"],
    ["text/plain", "Content-Type must be application/json"],
    ["application/json-seq", "Content-Type must be application/json"],
  ])("Content-Type %j is a 415: %s; the body is left unread and the connection closed", (type, why) => {
    const run = start({ "content-type": type });
    expect(run.nexts).toHaveLength(1);
    expectError(run.nexts[0], "unsupported_media_type", `${why}, got ${JSON.stringify(type)}`);
    expect(run.headers.get("Connection")).toBe("close");
    expect(listening(run)).toEqual([0, 0, 0, 0]);
  });

  test("no Content-Type is a 415 that says so", () => {
    const run = start({});
    expectError(run.nexts[0], "unsupported_media_type", "Content-Type must be application/json, got null");
  });

  test("Content-Encoding: identity (any case, padded) is read; anything else is a 415 naming it", async () => {
    const id = start({ ...JSON_TYPE, "content-encoding": " Identity " });
    id.req.end("[]");
    expect(await settled(id)).toBeUndefined();
    for (const encoding of ["gzip", "br", "identity, gzip", ""]) {
      const run = start({ ...JSON_TYPE, "content-encoding": encoding });
      expectError(run.nexts[0], "unsupported_media_type", `Content-Encoding ${JSON.stringify(encoding)} is not accepted; send the body uncompressed`);
      expect(run.headers.get("Connection")).toBe("close");
    }
  });

  test("a declared Content-Length over the limit is a 413 before any byte is read; at the limit it is read", async () => {
    const over = start({ ...JSON_TYPE, "content-length": String(LIMIT + 1) });
    expectError(over.nexts[0], "payload_too_large", `request body of ${LIMIT + 1} bytes exceeds the limit of ${LIMIT} bytes`);
    expect(over.headers.get("Connection")).toBe("close");
    expect(listening(over)).toEqual([0, 0, 0, 0]);
    const at = start({ ...JSON_TYPE, "content-length": String(LIMIT) });
    at.req.end(`"${"x".repeat(LIMIT - 2)}"`);
    expect(await settled(at)).toBeUndefined();
  });

  test("a Content-Length that is not a plain decimal is not taken as a size: the bytes that arrive are counted", async () => {
    for (const length of ["1e9", "0x100", " 100000"]) {
      const run = start({ ...JSON_TYPE, "content-length": length });
      run.req.end("true");
      expect(await settled(run)).toBeUndefined();
      expect(run.req.body).toBe(true);
    }
  });
});

describe("reading", () => {
  test("a body in many chunks is joined and parsed as I-JSON; then no listener is left", async () => {
    const run = start(JSON_TYPE);
    for (const part of ['{"a"', ":[1,", '2],"b":"\u00e9"', "}"]) run.req.write(Buffer.from(part, "utf8"));
    run.req.end();
    expect(await settled(run)).toBeUndefined();
    expect(run.req.body).toEqual({ a: [1, 2], b: "\u00e9" });
    expect(listening(run)).toEqual([0, 0, 0, 0]);
    expect(run.headers.has("Connection")).toBe(false);
  });

  test("bytes past the limit, whatever the headers said, are a 413; the connection closes and nothing more is heard", async () => {
    const run = start(JSON_TYPE);
    run.req.write(Buffer.alloc(LIMIT, 0x20));
    await new Promise((resolve) => setImmediate(resolve));
    expect(run.nexts).toHaveLength(0);
    run.req.write(Buffer.from(" "));
    expectError(await settled(run), "payload_too_large", `request body exceeds the limit of ${LIMIT} bytes`);
    expect(run.headers.get("Connection")).toBe("close");
    expect(listening(run)).toEqual([0, 0, 0, 0]);
    run.req.end("more");
    run.req.emit("aborted");
    await new Promise((resolve) => setImmediate(resolve));
    expect(run.nexts).toHaveLength(1);
  });

  test("a body cut off (aborted) or failing (error) is a 400 that says which, and the connection closes", async () => {
    const cut = start(JSON_TYPE);
    cut.req.write("{");
    cut.req.emit("aborted");
    expectError(await settled(cut), "bad_request", "the request body was cut off");
    expect(cut.headers.get("Connection")).toBe("close");
    expect(listening(cut)).toEqual([0, 0, 0, 0]);

    const failed = start(JSON_TYPE);
    failed.req.write("{");
    failed.req.emit("error", new Error("ECONNRESET"));
    expectError(await settled(failed), "bad_request", "the request body could not be read");
    expect(failed.headers.get("Connection")).toBe("close");
    expect(listening(failed)).toEqual([0, 0, 0, 0]);
  });

  test("a body that is not I-JSON goes to next with the parser's error; the connection stays (the body was read whole)", async () => {
    const run = start(JSON_TYPE);
    run.req.end('{"a":1,"a":2}');
    const err = await settled(run);
    expect(err).toBeInstanceOf(LedgerError);
    expect((err as LedgerError).code).toBe("invalid_json");
    expect((err as LedgerError).message).toBe('body/a: key "a" appears more than once');
    expect(run.headers.has("Connection")).toBe(false);
    expect(run.req.body).toBeUndefined();
  });
});
