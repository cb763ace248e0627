-- Snapshots (DESIGN.md "Raft"): the anchor (index, term, hash), the Merkle root and compact range
-- at that index, the configuration, the full materialized state and its state_root, signed by the
-- node that made it (or received from the leader that sent it).
CREATE TABLE snapshots (
  idx           INTEGER PRIMARY KEY,
  term          INTEGER NOT NULL,
  hash          BLOB NOT NULL CHECK (length(hash) = 32),
  root          TEXT NOT NULL,
  compact_range TEXT NOT NULL,
  config        BLOB NOT NULL,
  state_root    TEXT NOT NULL,
  data          BLOB NOT NULL,
  signer        TEXT NOT NULL,
  sig           TEXT NOT NULL,
  created_at    TEXT NOT NULL
);
