-- The tamper-evident audit log (RFC 9162 tree over canonical JSON entries; see keylatch-audit).
-- Bytes are lowercase hex TEXT so the SQL runs unchanged on SQLite and PostgreSQL.

-- One row per entry, in index order. `canonical` is the RFC 8785 JSON the leaf hash covers;
-- `time_s`, `resource`, `vm_id` and `kind` only serve queries (the entry itself is the record).
CREATE TABLE audit_entries (
    idx        BIGINT  NOT NULL PRIMARY KEY,
    canonical  TEXT    NOT NULL,
    leaf       TEXT    NOT NULL,
    time_s     BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,
    resource   TEXT,
    vm_id      TEXT
);
CREATE INDEX audit_entries_time ON audit_entries (time_s);
CREATE INDEX audit_entries_resource ON audit_entries (resource);
CREATE INDEX audit_entries_vm ON audit_entries (vm_id);

-- Complete subtrees of height >= 1 (2^level leaves from idx << level): proofs in O(log^2 n) reads.
CREATE TABLE audit_nodes (
    level  BIGINT  NOT NULL,
    idx    BIGINT  NOT NULL,
    hash   TEXT    NOT NULL,
    PRIMARY KEY (level, idx)
);

-- The right edge of the tree (keylatch-audit `Frontier::to_bytes`, hex). One row; appenders
-- lock it first, so appends from every process and replica are serialized.
CREATE TABLE audit_state (
    id        BIGINT  NOT NULL PRIMARY KEY,
    size      BIGINT  NOT NULL,
    frontier  TEXT    NOT NULL,
    CHECK (id = 1)
);
INSERT INTO audit_state (id, size, frontier) VALUES (1, 0, '4b4c46310000000000000000');

-- Signed checkpoints (C2SP signed notes). `frontier` is the tree's right edge at `size`, so the
-- next checkpoint is signed only if the tree still extends this one (never a fork).
CREATE TABLE audit_checkpoints (
    size       BIGINT  NOT NULL PRIMARY KEY,
    signed_at  BIGINT  NOT NULL,
    note       TEXT    NOT NULL,
    frontier   TEXT    NOT NULL
);
