-- Resource lifecycle (broker/src/custody.rs): one row per resource path, created with its first
-- version. `state` is 'active', 'disabled' or 'destroyed'. A destroyed resource keeps only
-- this row (a tombstone: no version rows remain), so the path can never be reused or enabled.
-- `rotate_by` (unix seconds) is when the current version's cryptoperiod ends;
-- `cryptoperiod_days` restarts it at every new version.
CREATE TABLE resource_lifecycle (
    path               TEXT    NOT NULL PRIMARY KEY,
    state              TEXT    NOT NULL,
    rotate_by          BIGINT,
    cryptoperiod_days  BIGINT,
    created            BIGINT  NOT NULL,
    updated            BIGINT  NOT NULL,
    destroyed          BIGINT
);

-- Resources stored before this migration are active, with no cryptoperiod.
INSERT INTO resource_lifecycle (path, state, rotate_by, cryptoperiod_days, created, updated, destroyed)
SELECT path, 'active', NULL, NULL, MIN(created), MAX(created), NULL FROM resources GROUP BY path;
