-- A follow-up top-up (follows_topup_id) credits the note of an uncertain item: it resolves
-- the open suspense record of its original in the same transaction, so that operations can
-- no longer release (credit) that note a second time. resolved_by names the follow-up.
ALTER TABLE suspense ADD COLUMN resolved_by TEXT NOT NULL DEFAULT '';
ALTER TABLE suspense ADD COLUMN resolved_at TIMESTAMPTZ;
-- The open records of a top-up, as a follow-up looks them up.
CREATE INDEX suspense_open_by_topup ON suspense (topup_id, n) WHERE status = '' AND resolved_by = '';

-- Before this migration a follow-up credited in PostgreSQL left its original's records open.
-- Resolve them now with the rule the stores apply at credit (sync/ledger/suspense.go): each
-- note of each follow-up, in credit order, closes the first open record of its original with
-- its value, else the first of unknown value. A note that finds none (its record was
-- released or rejected by an operator, possibly crediting the note twice) raises an ops
-- alarm for a person to check.
DO $$
DECLARE
    f    RECORD;
    note RECORD;
    k    BIGINT;
    a    BIGINT;
BEGIN
    FOR f IN SELECT topup_id, kiosk_id, credited_at, payload FROM topups
             WHERE COALESCE(payload->>'follows_topup_id', '') <> '' ORDER BY ledger_seq LOOP
        FOR note IN SELECT (l->>'value_minor')::BIGINT AS v, (l->>'count')::BIGINT AS c
                    FROM jsonb_array_elements(f.payload->'notes') AS l LOOP
            FOR i IN 1..note.c LOOP
                SELECT n INTO k FROM suspense
                 WHERE topup_id = f.payload->>'follows_topup_id' AND status = '' AND resolved_by = ''
                   AND value_minor = note.v ORDER BY n LIMIT 1;
                IF k IS NULL THEN
                    SELECT n INTO k FROM suspense
                     WHERE topup_id = f.payload->>'follows_topup_id' AND status = '' AND resolved_by = ''
                       AND value_minor = 0 ORDER BY n LIMIT 1;
                END IF;
                IF k IS NULL THEN
                    a := nextval('alarm_seq');
                    INSERT INTO ops_alarms (n, ref, kind, kiosk_id, topup_id, details, at)
                    VALUES (a, 'OA' || lpad(a::TEXT, 12, '0'), 'follow_up_unbacked', f.kiosk_id, f.topup_id,
                            format('follow-up of %s credited a note of %s with no open suspense record left: check for a second credit by a release',
                                   f.payload->>'follows_topup_id', note.v), now());
                ELSE
                    UPDATE suspense SET resolved_by = f.topup_id, resolved_at = f.credited_at WHERE n = k;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;
