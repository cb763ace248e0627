-- The replicated log, its Merkle subtree hashes, and per-node metadata and hard state.
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- Raft hard state: one row. commit_index and last_applied are durable (DESIGN.md "Persistent").
CREATE TABLE hard_state (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  term         INTEGER NOT NULL CHECK (term >= 0),
  voted_for    TEXT,
  commit_index INTEGER NOT NULL CHECK (commit_index >= 0),
  last_applied INTEGER NOT NULL CHECK (last_applied >= 0)
);
INSERT INTO hard_state (id, term, voted_for, commit_index, last_applied) VALUES (1, 0, NULL, 0, 0);

-- Entry i, hash-chained: hash = entry_hash(i) per DESIGN.md.
CREATE TABLE log (
  idx     INTEGER PRIMARY KEY CHECK (idx >= 1),
  term    INTEGER NOT NULL CHECK (term >= 1),
  kind    INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 3),
  payload BLOB NOT NULL,
  hash    BLOB NOT NULL CHECK (length(hash) = 32)
);

-- After compaction the entries up to idx are gone; this anchor (idx, term, hash) remains.
CREATE TABLE log_anchor (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  idx  INTEGER NOT NULL,
  term INTEGER NOT NULL,
  hash BLOB NOT NULL CHECK (length(hash) = 32)
);

-- Perfect Merkle subtrees: leaves [idx * 2^level, (idx + 1) * 2^level), RFC 9162 hashing.
CREATE TABLE merkle_nodes (
  level INTEGER NOT NULL,
  idx   INTEGER NOT NULL,
  hash  BLOB NOT NULL CHECK (length(hash) = 32),
  PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- Index of CHECKPOINT entries (derived from the log; verify-chain checks it against the log).
CREATE TABLE checkpoints (
  idx    INTEGER PRIMARY KEY,
  size   INTEGER NOT NULL UNIQUE,
  root   TEXT NOT NULL,
  head   TEXT NOT NULL,
  term   INTEGER NOT NULL,
  signer TEXT NOT NULL,
  ts     TEXT NOT NULL,
  sig    TEXT NOT NULL
);
