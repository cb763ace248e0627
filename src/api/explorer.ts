/**
 * GET /explorer: the audit explorer page (web/explorer/, bundled into dist/explorer/ by `npm run
 * build`), served as static files under a Content-Security-Policy that lets only the node's own
 * script and stylesheet run: no inline script, no other origin, so the page's verification code is
 * exactly the bundle the operator built. The page itself trusts nothing the node says.
 */
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import type { Request, Response } from "express";
import { LedgerError } from "../util/errors";
import type { MethodRouter } from "./routes";

/** dist/explorer/ of this checkout, both from dist/api/ (compiled) and src/api/ (through tsx). */
export const EXPLORER_DIR = path.resolve(__dirname, "..", "..", "dist", "explorer");

/** The files of the page and their types: nothing else under /explorer is served. */
const FILES: Readonly<Record<string, string>> = {
  "index.html": "text/html; charset=utf-8",
  "explorer.js": "text/javascript; charset=utf-8",
  "explorer.css": "text/css; charset=utf-8",
  // Its own icon, so the browser's /favicon.ico request is not a failed load on every visit.
  "favicon.svg": "image/svg+xml",
};

/** Scripts and styles from this origin only; fetches only to this origin (the API); no framing, forms or base. */
export const EXPLORER_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Mounts the page's routes on the app's top-level router; files are read once, at their first request. */
export function explorerRoutes(r: MethodRouter, dir: string = EXPLORER_DIR): void {
  const cache = new Map<string, Buffer>();
  const serve = (file: string) => async (_req: Request, res: Response): Promise<void> => {
    let body = cache.get(file);
    if (body === undefined) {
      try {
        body = await fsp.readFile(path.join(dir, file));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        throw new LedgerError("not_found", `the explorer is not built (${path.join(dir, file)} is missing): run npm run build`);
      }
      cache.set(file, body);
    }
    res.setHeader("Content-Security-Policy", EXPLORER_CSP);
    res.setHeader("Referrer-Policy", "no-referrer");
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    res.type(FILES[file]).send(body);
  };
  r.get("/explorer", serve("index.html"));
  for (const file of Object.keys(FILES)) r.get(`/explorer/${file}`, serve(file));
}
