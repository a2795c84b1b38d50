-- Balances, holds and the append-only ledger. Amounts are integer micro-credits (1 credit = 1,000,000).

CREATE TABLE accounts (
    user_id          text PRIMARY KEY,
    -- Spendable now: credits granted, less charges, less open holds. The database refuses a
    -- negative balance whatever the code does.
    available_micros bigint NOT NULL DEFAULT 0 CONSTRAINT available_not_negative CHECK (available_micros >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One hold per model request (hold_id = request id) for its worst-case cost, taken from
-- available_micros by Reserve and settled by the request's usage event, or released, or expired.
CREATE TABLE holds (
    hold_id       text PRIMARY KEY,
    user_id       text NOT NULL REFERENCES accounts (user_id),
    amount_micros bigint NOT NULL CHECK (amount_micros >= 0),
    status        text NOT NULL DEFAULT 'open'
                  CHECK (status IN ('open', 'settled', 'released', 'expired')),
    backend_type  text NOT NULL,
    provider      text NOT NULL,
    model         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    -- When the hold stopped being open (settled, released or expired).
    settled_at    timestamptz,
    CHECK ((status = 'open') = (settled_at IS NULL))
);
CREATE INDEX holds_open_by_expiry ON holds (expires_at) WHERE status = 'open';
CREATE INDEX holds_open_by_user ON holds (user_id) WHERE status = 'open';

-- Every movement of credits and every usage, once. event_id is the usage event's id (the request
-- id) for charge/usage rows, and "grant:<grant id>", "release:<hold id>", "expiry:<hold id>" for
-- the others, so applying anything twice inserts nothing the second time.
CREATE TABLE ledger (
    event_id         text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('grant', 'charge', 'usage', 'release', 'expiry')),
    user_id          text NOT NULL,
    -- Signed change of the user's credits (available + held): grant +, charge -, others 0.
    -- For every account: available_micros + open holds = sum(amount_micros).
    amount_micros    bigint NOT NULL,
    -- charge: the real cost at the prices of the day; amount_micros = -(cost - shortfall).
    cost_micros      bigint NOT NULL DEFAULT 0 CHECK (cost_micros >= 0),
    -- Part of the cost the balance could not cover (the usage outran its hold).
    shortfall_micros bigint NOT NULL DEFAULT 0 CHECK (shortfall_micros >= 0),
    -- The hold this row settled, released or expired, and its amount.
    hold_id          text,
    hold_micros      bigint NOT NULL DEFAULT 0 CHECK (hold_micros >= 0),
    backend_type     text,
    provider         text,
    model            text,
    mode             text CHECK (mode IN ('member', 'byok')),
    outcome          text,
    input_tokens     bigint NOT NULL DEFAULT 0,
    output_tokens    bigint NOT NULL DEFAULT 0,
    images           bigint NOT NULL DEFAULT 0,
    image_size       text NOT NULL DEFAULT '',
    image_quality    text NOT NULL DEFAULT '',
    reason           text,
    -- When the usage happened (the event's end); created_at is when it was applied.
    occurred_at      timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_usage_by_user ON ledger (user_id, occurred_at) WHERE kind IN ('charge', 'usage');

CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'billing.ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER ledger_no_update_or_delete BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();
