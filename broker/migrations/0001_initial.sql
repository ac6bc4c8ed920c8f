-- Sessions: one challenge each. A nonce is answered at most once: `issued` moves to
-- `consumed` in one conditional UPDATE, and to `attested` when a token was issued.
CREATE TABLE sessions (
    id         TEXT    NOT NULL PRIMARY KEY,
    nonce      TEXT    NOT NULL,
    tee        TEXT    NOT NULL,
    created    BIGINT  NOT NULL,
    expires    BIGINT  NOT NULL,
    state      TEXT    NOT NULL,
    token_jti  TEXT,
    token      TEXT
);
CREATE INDEX sessions_expires ON sessions (expires);

-- Resources: every version kept, sealed by the keystore (JSON of `SealedResource`).
CREATE TABLE resources (
    path     TEXT    NOT NULL,
    version  BIGINT  NOT NULL,
    sealed   TEXT    NOT NULL,
    enabled  BOOLEAN NOT NULL,
    created  BIGINT  NOT NULL,
    PRIMARY KEY (path, version)
);

-- Release policies: every version kept; the newest applies.
CREATE TABLE policies (
    path     TEXT    NOT NULL,
    version  BIGINT  NOT NULL,
    body     TEXT    NOT NULL,
    digest   TEXT    NOT NULL,
    created  BIGINT  NOT NULL,
    PRIMARY KEY (path, version)
);
