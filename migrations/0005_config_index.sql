-- The CONFIG entries of the log, found without reading the rest: the Raft core collects its
-- configurations from them at every start (src/raft/raft.ts), and the reader scans for them for
-- receipts. Without it a start read every entry of the log (6 s for 1,000,000 entries).
CREATE INDEX log_config ON log (idx) WHERE kind = 2;
