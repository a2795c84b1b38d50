-- Credit leases: credits set aside from a user's balance by OpenLease for one model-service
-- process (the holder) to spend on many of the user's member requests without a Reserve each.
-- The holder debits each request's worst case locally; the requests' usage events name the lease
-- and are charged against it (spent_micros). The unspent rest returns to the account when the
-- holder closes the lease and the events it published are applied, or when it expires.
-- For every account: available_micros + open holds + sum of (amount - spent) over open and
-- closing leases = sum(ledger.amount_micros).

CREATE TABLE leases (
    lease_id        text PRIMARY KEY,  -- 'lease_' + uuid4 hex, minted by billing-svc
    user_id         text NOT NULL REFERENCES accounts (user_id),
    -- Who holds it (host and process id), for operators; never used for identity.
    holder          text NOT NULL,
    backend_type    text NOT NULL,
    amount_micros   bigint NOT NULL CHECK (amount_micros >= 0),
    spent_micros    bigint NOT NULL DEFAULT 0
                    CHECK (spent_micros >= 0 AND spent_micros <= amount_micros),
    -- Usage events applied against the lease (ledger charge rows carrying its lease_id).
    events          bigint NOT NULL DEFAULT 0 CHECK (events >= 0),
    -- Set by CloseLease: the events the holder published; the lease returns once that many apply.
    expected_events bigint CHECK (expected_events >= 0),
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'closing', 'returned', 'expired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- The holder starts no request on the lease after use_until; the sweeper returns it after
    -- expires_at (use_until + the hold TTL: the longest a request started on it may run).
    use_until       timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    returned_at     timestamptz,
    CHECK ((status IN ('open', 'closing')) = (returned_at IS NULL))
);
CREATE INDEX leases_live_by_expiry ON leases (expires_at) WHERE status IN ('open', 'closing');
CREATE INDEX leases_live_by_user ON leases (user_id) WHERE status IN ('open', 'closing');

-- Ledger rows of leases: 'lease' (event_id 'lease:<lease id>', amount 0, hold_micros = the
-- amount set aside) and 'lease_return' (event_id 'lease-return:<lease id>', amount 0,
-- hold_micros = the unspent part returned, whether closed or expired). A charge row against a
-- lease carries its lease_id, with hold_micros = the part of the cost the lease paid.
ALTER TABLE ledger ADD COLUMN lease_id text;
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (
    kind IN ('grant', 'charge', 'usage', 'release', 'expiry', 'lease', 'lease_return')
);
