-- A follow-up top-up (follows_topup_id) credits the note of an uncertain item: it resolves
-- the open suspense record of its original in the same transaction, so that operations can
-- no longer release (credit) that note a second time. resolved_by names the follow-up.
ALTER TABLE suspense ADD COLUMN resolved_by TEXT NOT NULL DEFAULT '';
ALTER TABLE suspense ADD COLUMN resolved_at TIMESTAMPTZ;
-- The open records of a top-up, as a follow-up looks them up.
CREATE INDEX suspense_open_by_topup ON suspense (topup_id, n) WHERE status = '' AND resolved_by = '';
