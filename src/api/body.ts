/**
 * The one reader of request bodies: application/json in UTF-8, uncompressed, at most the body limit,
 * and I-JSON (src/ledger/ijson.ts) or refused with the reason. express.json() is not used: it keeps
 * the last of duplicate keys, rounds numbers, replaces invalid UTF-8 with U+FFFD and inflates
 * whatever Content-Encoding says (a garbage br body became a 500).
 */
import type { NextFunction, Request, RequestHandler, Response } from "express";
import { LedgerError } from "../util/errors";
import { parseIJson } from "../ledger/ijson";

const MEDIA_TYPE = /^application\/json\s*(?:;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

function checkHeaders(req: Request, limitBytes: number): void {
  const type = req.headers["content-type"];
  if (type === undefined || !MEDIA_TYPE.test(type.trim())) {
    const why = type !== undefined && /^application\/json\s*;/i.test(type) ? "the only charset is utf-8" : "Content-Type must be application/json";
    throw new LedgerError("unsupported_media_type", `${why}, got ${JSON.stringify(type ?? null)}`);
  }
  const encoding = req.headers["content-encoding"];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== "identity") {
    // Decompressing is a zip-bomb surface and buys nothing for bodies of a few KiB.
    throw new LedgerError("unsupported_media_type", `Content-Encoding ${JSON.stringify(encoding)} is not accepted; send the body uncompressed`);
  }
  const length = req.headers["content-length"];
  if (length !== undefined && /^[0-9]+$/.test(length) && Number(length) > limitBytes) {
    throw new LedgerError("payload_too_large", `request body of ${length} bytes exceeds the limit of ${limitBytes} bytes`);
  }
}

/** Reads at most limitBytes of the body; rejects with payload_too_large past it. */
function readBody(req: Request, limitBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const done = (err: LedgerError | null, body?: Buffer): void => {
      if (settled) return;
      settled = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("aborted", onAborted);
      if (err === null) resolve(body as Buffer);
      else reject(err);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limitBytes) {
        done(new LedgerError("payload_too_large", `request body exceeds the limit of ${limitBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => done(null, Buffer.concat(chunks, size));
    const onError = (): void => done(new LedgerError("bad_request", "the request body could not be read"));
    const onAborted = (): void => done(new LedgerError("bad_request", "the request body was cut off"));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("aborted", onAborted);
  });
}

/** Middleware: req.body = the I-JSON value of the body, or a 400/413/415 with the reason. */
export function ijsonBody(limitBytes: number): RequestHandler {
  return (req: Request, res: Response, next: NextFunction): void => {
    try {
      checkHeaders(req, limitBytes);
    } catch (err) {
      // The body is left unread: close the connection after the answer rather than drain it.
      res.setHeader("Connection", "close");
      next(err);
      return;
    }
    readBody(req, limitBytes).then(
      (buf) => {
        try {
          req.body = parseIJson(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), "body");
        } catch (err) {
          next(err);
          return;
        }
        next();
      },
      (err: unknown) => {
        res.setHeader("Connection", "close");
        next(err);
      },
    );
  };
}
