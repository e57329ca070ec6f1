-- SDR bot, issue 17: which seller takes a lead (prompts/sellers.toml,
-- runtime/seller_routing.py), fair across restarts and across every instance on this
-- database.
--
-- * seller_rotation: one row per seller ever assigned, with `rotation_seq`, the order of
--   its latest assignment (a sequence, not a clock: instances whose clocks disagree, or
--   leads assigned in the same microsecond, still queue in one order);
-- * seller_assignments: the seller of each lead (sticky: the lead keeps them);
-- * sdr_assign_seller: the lead's seller if it already has one among the candidates, else
--   the candidate assigned least recently (never assigned first, ties in the candidates'
--   order), recorded in the same transaction. The contact lock orders two calls for one
--   lead; the candidates' rotation rows, locked in one order, queue calls for different
--   leads, so two instances never hand the same "least recent" seller two leads at once;
-- * sdr_erase_lead: as in 20261202000001_erasure.sql, plus the lead's assignment.
--
-- Re-runnable (IF NOT EXISTS, CREATE OR REPLACE, guarded DO blocks). Depends on the
-- earlier files (sdr_lock_contact, sdr_is_erased, sdr_erasure_hash) and replaces their
-- sdr_erase_lead (same signature, so the store's request does not change).

-- ---------------------------------------------------------------------------------
-- Tables

CREATE TABLE IF NOT EXISTS seller_rotation (
    seller_key text PRIMARY KEY,
    rotation_seq bigint,
    last_assigned_at timestamptz
);
COMMENT ON TABLE seller_rotation IS
    'Round-robin of the sellers in prompts/sellers.toml: the order of each seller''s latest lead (rotation_seq; NULL: never assigned).';

CREATE TABLE IF NOT EXISTS seller_assignments (
    contact_key text PRIMARY KEY,
    seller_key text NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE seller_assignments IS
    'The seller (key in prompts/sellers.toml) each lead was assigned to; deleted with the lead on erasure.';

CREATE INDEX IF NOT EXISTS seller_assignments_seller ON seller_assignments (seller_key);

CREATE SEQUENCE IF NOT EXISTS seller_rotation_seq;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['seller_rotation', 'seller_assignments'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        IF NOT EXISTS (
            SELECT 1 FROM pg_policies
            WHERE schemaname = current_schema() AND tablename = t AND policyname = 'service_role_all'
        ) THEN
            EXECUTE format(
                'CREATE POLICY service_role_all ON %I AS PERMISSIVE FOR ALL TO service_role USING (true) WITH CHECK (true)',
                t);
        END IF;
        EXECUTE format('GRANT ALL ON TABLE %I TO service_role', t);
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
            EXECUTE format('REVOKE ALL ON TABLE %I FROM anon', t);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
            EXECUTE format('REVOKE ALL ON TABLE %I FROM authenticated', t);
        END IF;
    END LOOP;
    GRANT USAGE, SELECT ON SEQUENCE seller_rotation_seq TO service_role;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON SEQUENCE seller_rotation_seq FROM anon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE ALL ON SEQUENCE seller_rotation_seq FROM authenticated;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------
-- Functions

-- The seller of lead p_contact_key among p_candidates (seller keys, in the file's order):
-- the one it already has, else the least recently assigned, recorded. p_now (NULL: this
-- database's clock) is only written down; the rotation's order is rotation_seq. An
-- erased lead gets an answer and nothing recorded.
CREATE OR REPLACE FUNCTION sdr_assign_seller(
    p_contact_key text,
    p_candidates text[],
    p_now timestamptz DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, clock_timestamp());
    v_seller text;
BEGIN
    IF p_candidates IS NULL OR cardinality(p_candidates) = 0 OR array_position(p_candidates, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'assign_seller needs at least one candidate, and no null one' USING ERRCODE = '22023';
    END IF;
    PERFORM sdr_lock_contact(p_contact_key);
    SELECT seller_key INTO v_seller FROM seller_assignments
    WHERE contact_key = p_contact_key AND seller_key = ANY (p_candidates);
    IF v_seller IS NOT NULL THEN
        RETURN v_seller;
    END IF;
    -- A row for each candidate never assigned, then every candidate's row locked; both in
    -- the keys' order, so calls with overlapping candidates queue instead of deadlocking.
    INSERT INTO seller_rotation (seller_key)
    SELECT DISTINCT k FROM unnest(p_candidates) AS k ORDER BY k
    ON CONFLICT (seller_key) DO NOTHING;
    PERFORM 1 FROM seller_rotation WHERE seller_key = ANY (p_candidates) ORDER BY seller_key FOR UPDATE;
    SELECT r.seller_key INTO v_seller FROM seller_rotation r
    WHERE r.seller_key = ANY (p_candidates)
    ORDER BY r.rotation_seq ASC NULLS FIRST, array_position(p_candidates, r.seller_key)
    LIMIT 1;
    IF sdr_is_erased(p_contact_key) THEN
        RETURN v_seller;
    END IF;
    UPDATE seller_rotation SET rotation_seq = nextval('seller_rotation_seq'), last_assigned_at = v_now
    WHERE seller_key = v_seller;
    INSERT INTO seller_assignments (contact_key, seller_key, assigned_at)
    VALUES (p_contact_key, v_seller, v_now)
    ON CONFLICT (contact_key) DO UPDATE
        SET seller_key = excluded.seller_key, assigned_at = excluded.assigned_at;
    RETURN v_seller;
END
$$;

-- sdr_erase_lead of 20261202000001_erasure.sql with one line more (after turn_leases):
-- the lead's seller assignment goes too. The LGPD erasure, like SqliteStore.forget_lead:
-- every row of the lead and every outbox item that names it (its lanes in p_order_keys,
-- its per-endpoint webhook lanes, any payload carrying its contact key or lead id), the
-- tombstone, the anonymous audit row, and one `lead_erasure` outbox item with the lead's
-- ids in Chatwoot and PipeRun. false (and nothing written) when the contact is unknown.
CREATE OR REPLACE FUNCTION sdr_erase_lead(p_contact_key text, p_order_keys text[]) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_lead leads%ROWTYPE;
    v_first_channel text;
    v_channel text;
    v_provider_ids text[];
    v_hooks text := 'hooks:' || p_contact_key || '#';
    v_inbound integer;
    v_outbox integer;
    v_n integer;
    v_counts jsonb;
    v_erasure_id bigint;
    v_erased_at timestamptz;
BEGIN
    PERFORM sdr_lock_contact(p_contact_key);
    SELECT * INTO v_lead FROM leads WHERE contact_key = p_contact_key FOR UPDATE;
    SELECT channel INTO v_first_channel FROM inbound WHERE contact_key = p_contact_key ORDER BY id LIMIT 1;
    SELECT array_agg(DISTINCT ids.id) INTO v_provider_ids FROM (
        SELECT provider_message_id AS id FROM inbound WHERE contact_key = p_contact_key
        UNION
        SELECT provider_message_id FROM messages WHERE lead_id = v_lead.id AND provider_message_id IS NOT NULL
    ) ids;
    DELETE FROM inbound WHERE contact_key = p_contact_key;
    GET DIAGNOSTICS v_inbound = ROW_COUNT;
    DELETE FROM outbox
    WHERE order_key = ANY (coalesce(p_order_keys, '{}'))
       OR left(order_key, length(v_hooks)) = v_hooks
       OR payload ->> 'contact_key' = p_contact_key
       OR (v_lead.id IS NOT NULL AND payload ->> 'lead_id' = v_lead.id::text);
    GET DIAGNOSTICS v_outbox = ROW_COUNT;
    DELETE FROM turn_leases WHERE contact_key = p_contact_key;
    DELETE FROM seller_assignments WHERE contact_key = p_contact_key;
    IF v_lead.id IS NULL AND v_inbound = 0 THEN
        RETURN false;
    END IF;
    v_counts := jsonb_build_object('inbound', v_inbound, 'outbox', v_outbox);
    IF v_lead.id IS NOT NULL THEN
        DELETE FROM messages WHERE lead_id = v_lead.id;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_counts := v_counts || jsonb_build_object('messages', v_n);
        DELETE FROM orcamentos WHERE lead_id = v_lead.id;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_counts := v_counts || jsonb_build_object('orcamentos', v_n);
        DELETE FROM technical_questions WHERE lead_id = v_lead.id;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_counts := v_counts || jsonb_build_object('technical_questions', v_n);
        DELETE FROM followups WHERE lead_id = v_lead.id;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_counts := v_counts || jsonb_build_object('followups', v_n);
        DELETE FROM conversations WHERE lead_id = v_lead.id;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_counts := v_counts || jsonb_build_object('conversations', v_n);
        DELETE FROM conversation_context WHERE lead_id = v_lead.id;
        DELETE FROM leads WHERE id = v_lead.id;
    END IF;
    INSERT INTO tombstones (hash) VALUES (sdr_erasure_hash('contact:' || p_contact_key))
    ON CONFLICT (hash) DO NOTHING;
    INSERT INTO tombstones (hash)
    SELECT sdr_erasure_hash('message:' || pid) FROM unnest(coalesce(v_provider_ids, '{}')) AS pid
    ON CONFLICT (hash) DO NOTHING;
    v_channel := coalesce(v_lead.channel, v_first_channel);
    -- The audit row proves the erasure happened without saying who it was about.
    INSERT INTO erasures (channel, erased_at, lead_created_at, temperature, rows_deleted)
    VALUES (v_channel, now(), v_lead.created_at, v_lead.temperature, v_counts)
    RETURNING id, erased_at INTO v_erasure_id, v_erased_at;
    INSERT INTO outbox (kind, order_key, idempotency_key, payload, status, next_attempt_at)
    VALUES (
        'lead_erasure',
        'erasure:' || v_erasure_id,
        'erasure:' || v_erasure_id,
        jsonb_build_object(
            'erasure_id', v_erasure_id,
            'erased_at', v_erased_at,
            'channel', v_channel,
            'chatwoot_contact_id', v_lead.chatwoot_contact_id,
            'crm_person_id', v_lead.crm_person_id,
            'crm_deal_id', v_lead.crm_deal_id
        ),
        'pending',
        now()
    );
    RETURN true;
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
