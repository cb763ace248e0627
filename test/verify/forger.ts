/**
 * A forger with write access to a copy of ledger.db, for the tamper tests. It rewrites the hash
 * chain from an index on, rebuilds every stored Merkle node, the checkpoints table and the state
 * tables, so the only inconsistency left is the one a test put in on purpose. It imports nothing
 * from src/: the hashing is the independent node:crypto implementation of DESIGN.md, so the tests
 * do not share a bug with the verifier they attack.
 */
import { createPrivateKey, sign as cryptoSign } from "node:crypto";
import type { Database } from "better-sqlite3";
import { CheckpointPayload, bufToHex, checkpointMessage, entryHash, genesisHash, leafHash, nodeHash, sha256 } from "../support/independent";

export interface LogRow {
  idx: number;
  term: number;
  kind: number;
  payload: Buffer;
  hash: Buffer;
}

export const KIND_RECORD = 1;
export const KIND_CHECKPOINT = 3;

/** The cluster id from the meta table; throws when there is none. */
export function clusterIdOf(db: Database): string {
  const r = db.prepare("SELECT value FROM meta WHERE key = 'cluster_id'").get() as { value: string } | undefined;
  if (r === undefined) throw new Error("no cluster_id in meta");
  return r.value;
}

export function logRows(db: Database): LogRow[] {
  return db.prepare("SELECT idx, term, kind, payload, hash FROM log ORDER BY idx").all() as LogRow[];
}

export function logRow(db: Database, idx: number): LogRow {
  const r = db.prepare("SELECT idx, term, kind, payload, hash FROM log WHERE idx = ?").get(idx) as LogRow | undefined;
  if (r === undefined) throw new Error(`no log row ${idx}`);
  return r;
}

/** Recomputes entry_hash for every row from `from` on, chaining from the stored hash of from-1. */
export function rechainFrom(db: Database, from: number): void {
  const rows = logRows(db);
  let prev: Buffer = genesisHash(clusterIdOf(db));
  const update = db.prepare("UPDATE log SET hash = ? WHERE idx = ?");
  for (const r of rows) {
    if (r.idx >= from) {
      const h = entryHash(r.idx, r.term, r.kind, prev, r.payload);
      update.run(h, r.idx);
      prev = h;
    } else {
      prev = r.hash;
    }
  }
}

/** Every perfect aligned subtree inside [0, N) over the current log hashes: what a node stores. */
export function rebuildMerkle(db: Database): void {
  const hashes = logRows(db).map((r) => r.hash);
  db.prepare("DELETE FROM merkle_nodes").run();
  const insert = db.prepare("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)");
  let level: Buffer[] = hashes.map((h) => leafHash(h));
  // A tree over N leaves has fewer than 64 levels; the bound makes the loop's limit explicit.
  for (let depth = 0; depth < 64 && level.length > 0; depth++) {
    level.forEach((h, i) => insert.run(depth, i, h));
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i], level[i + 1]));
    level = next;
  }
}

/** The checkpoints table re-derived from the CHECKPOINT entries in the log. */
export function rebuildCheckpointTable(db: Database): void {
  db.prepare("DELETE FROM checkpoints").run();
  const insert = db.prepare("INSERT INTO checkpoints (idx, size, root, head, term, signer, ts, sig, subjects_root) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  for (const r of logRows(db)) {
    if (r.kind !== KIND_CHECKPOINT) continue;
    const cp = JSON.parse(r.payload.toString("utf8")) as CheckpointPayload;
    insert.run(r.idx, cp.size, cp.root, cp.head, cp.term, cp.signer, cp.ts, cp.sig, cp.subjects_root ?? null);
  }
}

interface RecordFields {
  subject: string;
  idempotency_key?: string;
  request_digest?: string;
}

/**
 * The state tables replayed from the log up to last_applied, per DESIGN.md "State machine":
 * per subject a version and subject_head = SHA-256(prev head || entry_hash) from 32 zero bytes;
 * a record whose idempotency key was seen before changes nothing.
 */
export function replayState(db: Database): void {
  const hard = db.prepare("SELECT last_applied FROM hard_state WHERE id = 1").get() as { last_applied: number };
  for (const t of ["subjects", "subject_records", "dedup"]) db.prepare(`DELETE FROM ${t}`).run();
  const subjects = new Map<string, { version: number; head: Buffer; last: number }>();
  const seenKeys = new Set<string>();
  const putRecord = db.prepare("INSERT INTO subject_records (subject, version, idx) VALUES (?, ?, ?)");
  const putDedup = db.prepare("INSERT INTO dedup (key, digest, idx, term, hash) VALUES (?, ?, ?, ?, ?)");
  for (const r of logRows(db)) {
    if (r.idx > hard.last_applied || r.kind !== KIND_RECORD) continue;
    const rec = JSON.parse(r.payload.toString("utf8")) as RecordFields;
    if (rec.idempotency_key !== undefined) {
      if (seenKeys.has(rec.idempotency_key)) continue;
      seenKeys.add(rec.idempotency_key);
      putDedup.run(rec.idempotency_key, rec.request_digest ?? "", r.idx, r.term, r.hash);
    }
    const prev = subjects.get(rec.subject);
    const s = { version: (prev?.version ?? 0) + 1, head: sha256(prev?.head ?? Buffer.alloc(32), r.hash), last: r.idx };
    subjects.set(rec.subject, s);
    putRecord.run(rec.subject, s.version, r.idx);
  }
  const putSubject = db.prepare("INSERT INTO subjects (subject, version, head, last_index) VALUES (?, ?, ?, ?)");
  for (const [name, s] of subjects) putSubject.run(name, s.version, s.head, s.last);
}

/** A thorough forger's cover-up after changing the log at `from`: chain, Merkle, tables, state. */
export function forgeFrom(db: Database, from: number): void {
  db.transaction(() => {
    rechainFrom(db, from);
    rebuildMerkle(db);
    rebuildCheckpointTable(db);
    replayState(db);
  })();
}

const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** Re-signs a checkpoint body with a raw 32-byte Ed25519 secret key (hex), as node.key stores it. */
export function resign(cp: CheckpointPayload, secretKeyHex: string): CheckpointPayload {
  const key = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, Buffer.from(secretKeyHex, "hex")]), format: "der", type: "pkcs8" });
  return { ...cp, sig: bufToHex(cryptoSign(null, checkpointMessage(cp), key)) };
}
