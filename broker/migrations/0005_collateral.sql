-- Collateral fetched from AMD KDS and Intel PCS/PCCS, shared by every replica.
-- kind: 'snp-vcek' (body: base64 DER) or 'tdx' (body: TdxCollateral JSON).
-- cache_key: 'snp-vcek' → '<product>/<hwid hex>/<tcb>'; 'tdx' → '<fmspc hex>/<ca>'.
-- next_update: Unix seconds after which the entry must not be used (NULL: no expiry).
CREATE TABLE collateral (
    kind        TEXT   NOT NULL,
    cache_key   TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    fetched_at  BIGINT NOT NULL,
    next_update BIGINT,
    PRIMARY KEY (kind, cache_key)
);
