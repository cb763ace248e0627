-- Checkpoints sign subjects_root (src/ledger/subject-tree.ts), the commitment that proves a
-- subject's history complete; checkpoints written before it have none (NULL).
ALTER TABLE checkpoints ADD COLUMN subjects_root TEXT;
