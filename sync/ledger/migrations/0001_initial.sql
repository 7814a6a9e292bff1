-- The ledger's tables. Money is BIGINT minor units; a journal epoch is its 16-hex-digit
-- form (it is a uint64, and the fixed-width text sorts like the number).

-- Sequences number ledger_refs (LR...), suspense refs (SU...) and alarm refs (OA...):
-- unique, not contiguous (a transaction retried after a serialization failure uses a value).
CREATE SEQUENCE ledger_ref_seq;
CREATE SEQUENCE suspense_seq;
CREATE SEQUENCE alarm_seq;

-- Credited top-ups: a topup_id is credited once, forever.
CREATE TABLE topups (
    topup_id     TEXT PRIMARY KEY,
    ledger_seq   BIGINT NOT NULL UNIQUE,
    ledger_ref   TEXT NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    kiosk_id     TEXT NOT NULL,
    epoch        TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    account      TEXT NOT NULL,
    currency     TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    outcome      TEXT NOT NULL,
    receipt_no   BIGINT NOT NULL,
    credited_at  TIMESTAMPTZ NOT NULL,
    conflicts    INTEGER NOT NULL DEFAULT 0,
    payload      JSONB NOT NULL
);
CREATE INDEX topups_account ON topups (account, ledger_seq DESC);

CREATE TABLE accounts (
    account     TEXT PRIMARY KEY,
    opened_at   TIMESTAMPTZ NOT NULL,
    topup_count BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE balances (
    account       TEXT NOT NULL REFERENCES accounts,
    currency      TEXT NOT NULL,
    balance_minor BIGINT NOT NULL,
    PRIMARY KEY (account, currency)
);

-- What was credited to an account per UTC day (top-ups and released suspense).
CREATE TABLE daily_credits (
    account      TEXT NOT NULL,
    day          TEXT NOT NULL,
    currency     TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    PRIMARY KEY (account, day, currency)
);

-- One row per journal of a kiosk: the watermark and the seqs held beyond a gap.
CREATE TABLE kiosk_epochs (
    kiosk_id       TEXT NOT NULL,
    epoch          TEXT NOT NULL,
    unapproved     BOOLEAN NOT NULL DEFAULT FALSE,
    watermark      BIGINT NOT NULL DEFAULT 0,
    above          BIGINT[] NOT NULL DEFAULT '{}',
    topups         BIGINT NOT NULL DEFAULT 0,
    last_credit_at TIMESTAMPTZ,
    PRIMARY KEY (kiosk_id, epoch)
);

-- A kiosk's cash-in per day (the policy's daily bound).
CREATE TABLE kiosk_daily (
    kiosk_id TEXT NOT NULL,
    day      TEXT NOT NULL,
    notes    BIGINT NOT NULL,
    PRIMARY KEY (kiosk_id, day)
);
CREATE TABLE kiosk_daily_amounts (
    kiosk_id     TEXT NOT NULL,
    day          TEXT NOT NULL,
    currency     TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    PRIMARY KEY (kiosk_id, day, currency)
);

CREATE TABLE suspense (
    n           BIGINT PRIMARY KEY,
    ref         TEXT NOT NULL UNIQUE,
    topup_id    TEXT NOT NULL,
    kiosk_id    TEXT NOT NULL,
    account     TEXT NOT NULL,
    currency    TEXT NOT NULL,
    value_minor BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    status      TEXT NOT NULL DEFAULT '',
    decision    JSONB,
    credit_ref  TEXT NOT NULL DEFAULT ''
);

-- Refused redeliveries: same topup_id, other content.
CREATE TABLE conflicts (
    id            BIGSERIAL PRIMARY KEY,
    topup_id      TEXT NOT NULL,
    stored_hash   TEXT NOT NULL,
    received_hash TEXT NOT NULL,
    received      JSONB NOT NULL,
    at            TIMESTAMPTZ NOT NULL
);

-- Top-ups stored without crediting them (DESIGN.md §11).
CREATE TABLE held (
    topup_id     TEXT PRIMARY KEY,
    kiosk_id     TEXT NOT NULL,
    epoch        TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    account      TEXT NOT NULL,
    currency     TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    qr_nonce     TEXT NOT NULL DEFAULT '',
    held_at      TIMESTAMPTZ NOT NULL,
    decision     JSONB,
    ledger_ref   TEXT NOT NULL DEFAULT '',
    payload      JSONB NOT NULL
);

-- A wallet code opens one top-up, forever.
CREATE TABLE qr_nonces (
    nonce    TEXT PRIMARY KEY,
    topup_id TEXT NOT NULL
);

CREATE TABLE ops_alarms (
    n        BIGINT PRIMARY KEY,
    ref      TEXT NOT NULL UNIQUE,
    kind     TEXT NOT NULL,
    kiosk_id TEXT NOT NULL,
    topup_id TEXT NOT NULL DEFAULT '',
    details  TEXT NOT NULL DEFAULT '',
    at       TIMESTAMPTZ NOT NULL
);
