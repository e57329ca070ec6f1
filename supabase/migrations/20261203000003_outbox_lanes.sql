-- SDR bot, issue 18 ("queues stay fair under a flood"): the outbox is claimed by
-- priority, and a claim reads about as many rows as it claims; the same order as
-- store/sqlite/outbox.py.
--
-- 10,000 form leads in two seconds queued ~73k items; the claim looked for the heads of
-- every open order key at each call, so its cost grew with the queue, and a new lead's
-- reply waited behind mirrors and CRM syncs queued before it.
--
-- * sdr_outbox_priority: the kind's priority, as core/outbox.py decides it (0: the
--   lead's replies, sends and first touch; 1: the Chatwoot mirror; 2: CRM, Conversions
--   API, webhooks, erasure clean-up, and any kind it does not know).
--   tests/store/test_postgres_outbox_lanes.py holds the two lists together;
-- * outbox.priority: set on insert by a trigger (every writer of the outbox, the SQL
--   functions of earlier files included, gets it without a change), backfilled here for
--   open items; outbox_claim indexes the pending items in claim order per priority;
-- * sdr_claim_outbox_for: expired leases first, then each priority in turn, due order
--   within it, stopping at p_limit. Still only the head of each order key (its lowest
--   open id: a later reply never overtakes an earlier one still retrying), checked per
--   candidate on outbox_open, still FOR UPDATE SKIP LOCKED. A head is decided at claim
--   time, as before, not kept in a column as SQLite does: concurrent writers here would
--   race to keep it. So a claim also reads the due items queued behind a key's head
--   that is in flight or backing off (a few per lead), not only those it claims;
-- * sdr_claim_outbox: the same claim without an owner (kept for its callers);
-- * sdr_next_outbox_due: the earliest due head, looked for per priority on the index.
--
-- Re-runnable (IF NOT EXISTS, CREATE OR REPLACE, DROP TRIGGER IF EXISTS). Replaces the
-- claim functions of 20261125000002/3 with the same signatures (the store's requests do
-- not change) and returns the same rows, now with their priority.

-- ---------------------------------------------------------------------------------
-- Priority

CREATE OR REPLACE FUNCTION sdr_outbox_priority(p_kind text) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (CASE
        WHEN p_kind IN ('meta_lead_fetch', 'reengage', 'send_media', 'send_text') THEN 0
        WHEN p_kind IN ('chatwoot_handoff', 'chatwoot_message', 'chatwoot_note', 'chatwoot_profile') THEN 1
        ELSE 2
    END)::smallint
$$;

ALTER TABLE outbox ADD COLUMN IF NOT EXISTS priority smallint NOT NULL DEFAULT 2;
COMMENT ON COLUMN outbox.priority IS
    'Claim priority of the kind (sdr_outbox_priority, set on insert): 0 replies to the lead, 1 the Chatwoot mirror, 2 CRM, ads, webhooks and the rest.';

CREATE OR REPLACE FUNCTION sdr_outbox_set_priority() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.priority := sdr_outbox_priority(NEW.kind);
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS outbox_priority ON outbox;
CREATE TRIGGER outbox_priority BEFORE INSERT OR UPDATE OF kind ON outbox
    FOR EACH ROW EXECUTE FUNCTION sdr_outbox_set_priority();

-- Items queued before this file: only open ones are ever claimed again.
UPDATE outbox SET priority = sdr_outbox_priority(kind)
WHERE status IN ('pending', 'inflight') AND priority IS DISTINCT FROM sdr_outbox_priority(kind);

CREATE INDEX IF NOT EXISTS outbox_claim ON outbox (priority, next_attempt_at, id) WHERE status = 'pending';

-- ---------------------------------------------------------------------------------
-- Claims

CREATE OR REPLACE FUNCTION sdr_claim_outbox_for(
    p_owner text,
    p_limit integer,
    p_now timestamptz,
    p_lease_seconds double precision
) RETURNS SETOF outbox
LANGUAGE plpgsql
-- Planned for each priority's own count: a plan cached for the average one could walk
-- outbox_due past a whole flood of other priorities to find the few replies.
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    -- "Due" at the caller's clock, which may look ahead but never lags the database
    -- clock that stamped new items (a skewed app clock must not hold replies back).
    v_due timestamptz := greatest(coalesce(p_now, now()), now());
    v_ids bigint[];
    v_more bigint[];
    v_priority integer;
BEGIN
    -- In flight with an expired lease (their instance died): claimed once already.
    SELECT coalesce(array_agg(c.id), '{}') INTO v_ids FROM (
        SELECT o.id FROM outbox o
        WHERE o.status = 'inflight' AND o.lease_expires_at IS NOT NULL AND o.lease_expires_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM outbox p
              WHERE p.order_key = o.order_key AND p.id < o.id AND p.status IN ('pending', 'inflight'))
        ORDER BY o.lease_expires_at, o.id
        LIMIT greatest(p_limit, 0)
        FOR UPDATE OF o SKIP LOCKED
    ) c;
    FOR v_priority IN 0..2 LOOP
        EXIT WHEN cardinality(v_ids) >= greatest(p_limit, 0);
        SELECT coalesce(array_agg(c.id), '{}') INTO v_more FROM (
            SELECT o.id FROM outbox o
            WHERE o.status = 'pending' AND o.priority = v_priority AND o.next_attempt_at <= v_due
              AND NOT EXISTS (
                  SELECT 1 FROM outbox p
                  WHERE p.order_key = o.order_key AND p.id < o.id AND p.status IN ('pending', 'inflight'))
            ORDER BY o.next_attempt_at, o.id
            LIMIT greatest(p_limit, 0) - cardinality(v_ids)
            FOR UPDATE OF o SKIP LOCKED
        ) c;
        v_ids := v_ids || v_more;
    END LOOP;
    RETURN QUERY
    WITH claimed AS (
        UPDATE outbox u
        SET status = 'inflight',
            attempts = u.attempts + 1,
            claimed_by = p_owner,
            lease_expires_at = now() + make_interval(secs => greatest(p_lease_seconds, 0.001)),
            updated_at = now()
        WHERE u.id = ANY (v_ids)
        RETURNING u.*
    )
    SELECT * FROM claimed ORDER BY claimed.priority, claimed.next_attempt_at, claimed.id;
END
$$;

CREATE OR REPLACE FUNCTION sdr_claim_outbox(p_limit integer, p_lease_seconds integer)
RETURNS SETOF outbox
LANGUAGE sql AS $$
    SELECT * FROM sdr_claim_outbox_for(NULL, p_limit, now(), greatest(p_lease_seconds, 1))
$$;

-- When the next claimable item is due: the earliest pending head of an order key, or
-- now for an inflight item whose lease expired. NULL when nothing can become due.
CREATE OR REPLACE FUNCTION sdr_next_outbox_due() RETURNS timestamptz
LANGUAGE sql STABLE
SET plan_cache_mode = force_custom_plan
AS $$
    SELECT least(
        (SELECT min(first.next_attempt_at)
         FROM generate_series(0, 2) AS pr(priority)
         CROSS JOIN LATERAL (
             SELECT o.next_attempt_at FROM outbox o
             WHERE o.status = 'pending' AND o.priority = pr.priority
               AND NOT EXISTS (
                   SELECT 1 FROM outbox p
                   WHERE p.order_key = o.order_key AND p.id < o.id AND p.status IN ('pending', 'inflight'))
             ORDER BY o.next_attempt_at, o.id
             LIMIT 1
         ) first),
        (SELECT min(o.lease_expires_at) FROM outbox o
         WHERE o.status = 'inflight' AND o.lease_expires_at <= now()))
$$;
