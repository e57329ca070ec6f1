-- SDR bot, issue 15: two lookups the providers' webhooks need, and provider rate limits
-- shared by every instance on this database.
--
-- * sdr_lead_by_chatwoot_contact: the lead behind a Chatwoot contact (a contact event
--   carries no conversation id);
-- * sdr_record_referral: a lead already in a thread came back through an ad (Instagram
--   `messaging_referrals`): the lead's attribution becomes the newest ad;
-- * rate_slots + sdr_take_rate_slot: a provider's rate (Z-API 20 msg/s per instance, ...)
--   is the provider's, not each bot instance's. One row per limit keeps the next free
--   send slot (GCRA, as runtime/ratelimit.py); taking a slot is one INSERT ... ON
--   CONFLICT DO UPDATE, whose row lock queues instances taking slots at once.
--
-- Re-runnable (IF NOT EXISTS, CREATE OR REPLACE, guarded DO blocks). Depends on the
-- earlier files (sdr_get_lead, sdr_lock_contact); replaces nothing.

-- ---------------------------------------------------------------------------------
-- Tables and indexes

CREATE TABLE IF NOT EXISTS rate_slots (
    name text PRIMARY KEY,
    next_slot_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE rate_slots IS
    'The next free send slot of each provider rate limit (GCRA), shared by every bot instance.';

DO $$
BEGIN
    ALTER TABLE rate_slots ENABLE ROW LEVEL SECURITY;
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = current_schema() AND tablename = 'rate_slots' AND policyname = 'service_role_all'
    ) THEN
        CREATE POLICY service_role_all ON rate_slots AS PERMISSIVE FOR ALL TO service_role
            USING (true) WITH CHECK (true);
    END IF;
    GRANT ALL ON TABLE rate_slots TO service_role;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON TABLE rate_slots FROM anon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE ALL ON TABLE rate_slots FROM authenticated;
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS leads_chatwoot_contact ON leads (chatwoot_contact_id)
    WHERE chatwoot_contact_id IS NOT NULL;

-- ---------------------------------------------------------------------------------
-- Functions

-- The lead linked to a Chatwoot contact, as sdr_get_lead shapes it; several (one person
-- on two channels, contacts merged in Chatwoot): the one whose record changed last.
CREATE OR REPLACE FUNCTION sdr_lead_by_chatwoot_contact(p_chatwoot_contact_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_contact_key text;
BEGIN
    SELECT contact_key INTO v_contact_key FROM leads
    WHERE chatwoot_contact_id = p_chatwoot_contact_id
    ORDER BY updated_at DESC, id DESC
    LIMIT 1;
    IF v_contact_key IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN sdr_get_lead(p_contact_key => v_contact_key);
END
$$;

-- The newest ad replaces the lead's attribution. False, and nothing written, for an
-- unknown contact, an erased one (its row is gone; the contact lock orders this after an
-- erasure running at the same time) or an empty referral.
CREATE OR REPLACE FUNCTION sdr_record_referral(p_contact_key text, p_referral jsonb) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_rows integer;
BEGIN
    IF p_referral IS NULL OR jsonb_typeof(p_referral) <> 'object' OR p_referral = '{}'::jsonb THEN
        RETURN false;
    END IF;
    PERFORM sdr_lock_contact(p_contact_key);
    UPDATE leads SET referral = p_referral, updated_at = now() WHERE contact_key = p_contact_key;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows > 0;
END
$$;

-- Reserve the next send slot of limit p_name and return the seconds from p_now until it
-- (0: send now). GCRA: `p_burst` sends free at once, then one every 1/p_rate_per_s s;
-- capacity left unused piles up to p_burst sends, no more. The slot is taken: the caller
-- sleeps until it and sends, it never asks again for the same send. p_now NULL (what
-- the bot passes) is this database's clock, the one every instance shares: a host whose
-- clock is off can then neither stall the others nor send ahead of them.
CREATE OR REPLACE FUNCTION sdr_take_rate_slot(
    p_name text,
    p_rate_per_s double precision,
    p_burst integer,
    p_now timestamptz DEFAULT NULL
) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, clock_timestamp());
    v_interval interval;
    v_earliest timestamptz;
    v_slot timestamptz;
BEGIN
    IF p_rate_per_s IS NULL OR NOT p_rate_per_s > 0 THEN
        RAISE EXCEPTION 'rate_per_s must be positive' USING ERRCODE = '22023';
    END IF;
    v_interval := greatest(make_interval(secs => 1.0 / p_rate_per_s), interval '1 microsecond');
    v_earliest := v_now - (greatest(coalesce(p_burst, 1), 1) - 1) * v_interval;
    INSERT INTO rate_slots AS r (name, next_slot_at, updated_at)
    VALUES (p_name, v_earliest + v_interval, now())
    ON CONFLICT (name) DO UPDATE
        SET next_slot_at = greatest(r.next_slot_at, v_earliest) + v_interval, updated_at = now()
    RETURNING r.next_slot_at - v_interval INTO v_slot;
    RETURN greatest(0, extract(epoch FROM v_slot - v_now))::double precision;
END
$$;

-- ---------------------------------------------------------------------------------
-- Pin search_path to the schema the migration ran in, and expose the functions to the
-- service role only (as the earlier files do for theirs).
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'sdr\_%'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', f);
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM anon', f);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM authenticated', f);
        END IF;
    END LOOP;
END
$$;
