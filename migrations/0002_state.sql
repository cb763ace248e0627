-- The materialized state of the governance state machine; changed only by apply, atomically
-- with hard_state.last_applied.
CREATE TABLE subjects (
  subject       TEXT PRIMARY KEY,
  version       INTEGER NOT NULL CHECK (version >= 1),
  head          BLOB NOT NULL CHECK (length(head) = 32),
  last_index    INTEGER NOT NULL
) WITHOUT ROWID;

-- Each version of each subject and the log index that made it.
CREATE TABLE subject_records (
  subject TEXT NOT NULL,
  version INTEGER NOT NULL,
  idx     INTEGER NOT NULL,
  PRIMARY KEY (subject, version)
) WITHOUT ROWID;
CREATE INDEX subject_records_by_idx ON subject_records (idx);

-- Client dedup: an idempotency key, the digest of the request it came with, and its result.
CREATE TABLE dedup (
  key    TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  idx    INTEGER NOT NULL,
  term   INTEGER NOT NULL,
  hash   BLOB NOT NULL CHECK (length(hash) = 32)
) WITHOUT ROWID;
