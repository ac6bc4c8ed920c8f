-- Admin API bearer tokens. Only the SHA-256 of a token is stored (hex); the token itself is
-- shown once at creation. `prefixes` is a JSON array of resource-path prefixes ([] = all).
-- `expires` and `revoked` are Unix seconds or NULL.
CREATE TABLE admin_tokens (
    id          TEXT    NOT NULL PRIMARY KEY,
    hash        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    prefixes    TEXT    NOT NULL,
    created     BIGINT  NOT NULL,
    expires     BIGINT,
    revoked     BIGINT,
    created_by  TEXT    NOT NULL
);

-- Published reference-value bundles: every accepted version kept, with who published it and
-- when. `signed` is the standard base64 of the COSE_Sign bytes; `digest` the hex SHA-256 of
-- the canonical payload. The newest version of a name is what appraisal uses.
CREATE TABLE reference_value_bundles (
    name        TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    signed      TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    expires     BIGINT  NOT NULL,
    publisher   TEXT    NOT NULL,
    published   BIGINT  NOT NULL,
    PRIMARY KEY (name, version)
);
