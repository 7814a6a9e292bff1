-- Cash collections (sync/CONTRACT.md §5.6): one record per collection_id, evidence only.
CREATE SEQUENCE collection_seq;

CREATE TABLE collections (
    collection_id TEXT PRIMARY KEY,
    ledger_ref    TEXT NOT NULL UNIQUE,
    kiosk_id      TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    stored_at     TIMESTAMPTZ NOT NULL,
    conflicts     INTEGER NOT NULL DEFAULT 0,
    record        JSONB NOT NULL
);
CREATE INDEX collections_kiosk ON collections (kiosk_id);

-- The collection whose record lists a suspense record: the evidence it is settled on.
ALTER TABLE suspense ADD COLUMN collection_id TEXT NOT NULL DEFAULT '';
CREATE INDEX suspense_collection ON suspense (collection_id) WHERE collection_id <> '';
