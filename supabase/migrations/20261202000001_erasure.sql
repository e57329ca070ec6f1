-- SDR bot erasure that stays erased (LGPD): a tombstone of keyed hashes, checked by the
-- inbox and by turn commits, and the erasure itself widened to every outbox item of the
-- lead plus one `lead_erasure` item that takes it to Chatwoot, the CRM and the webhook
-- subscribers (runtime/erasure.py).
--
-- The tombstone holds HMAC-SHA256 hashes only ('contact:<contact key>' and
-- 'message:<provider message id>'). The key is generated here, once, from the database's
-- strong random source (gen_random_uuid, PostgreSQL 13+) and kept in `erasure_secret` as
-- the two padded HMAC keys, so the hashes are computed inside the functions with core
-- sha256() and no extension; nothing outside the database ever needs the key.
--
-- Re-runnable (IF NOT EXISTS, CREATE OR REPLACE, guarded DO blocks); the key, once
-- created, is never replaced. Depends on the three earlier files, and replaces their
-- sdr_add_inbound, sdr_commit_turn_once and sdr_erase_lead (same signatures, so the
-- store's requests do not change).

-- ---------------------------------------------------------------------------------
-- Tables

CREATE TABLE IF NOT EXISTS erasure_secret (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    k_ipad bytea NOT NULL,
    k_opad bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE erasure_secret IS
    'The HMAC key of the erasure tombstones (as its inner and outer padded keys); one row, never replaced.';

CREATE TABLE IF NOT EXISTS tombstones (
    hash text PRIMARY KEY
);
COMMENT ON TABLE tombstones IS
    'Keyed hashes of erased contact keys and provider message ids: what arrives for an erased lead is dropped.';

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['erasure_secret', 'tombstones'] LOOP
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
END
$$;

-- The key: 32 random bytes (two v4 UUIDs, 244 random bits), stored as RFC 2104's
-- K xor ipad and K xor opad over the 64-byte block.
DO $$
DECLARE
    v_key bytea;
    v_ipad bytea := decode(repeat('36', 64), 'hex');
    v_opad bytea := decode(repeat('5c', 64), 'hex');
BEGIN
    IF EXISTS (SELECT 1 FROM erasure_secret) THEN
        RETURN;
    END IF;
    v_key := decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');
    FOR i IN 0..length(v_key) - 1 LOOP
        v_ipad := set_byte(v_ipad, i, get_byte(v_key, i) # 54);
        v_opad := set_byte(v_opad, i, get_byte(v_key, i) # 92);
    END LOOP;
    INSERT INTO erasure_secret (id, k_ipad, k_opad) VALUES (true, v_ipad, v_opad) ON CONFLICT (id) DO NOTHING;
END
$$;

-- ---------------------------------------------------------------------------------
-- Functions

-- HMAC-SHA256(key, p_value) as lowercase hex; NULL if the key row is missing (then an
-- erasure fails loudly on the tombstone's NOT NULL instead of writing nothing).
CREATE OR REPLACE FUNCTION sdr_erasure_hash(p_value text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(s.k_opad || sha256(s.k_ipad || convert_to(p_value, 'UTF8'))), 'hex')
    FROM erasure_secret s WHERE s.id
$$;

-- Intake, erasure and turn commits of one contact take this lock first, so an erasure
-- can neither miss a message stored while it runs nor be undone by a turn committing
-- after it.
CREATE OR REPLACE FUNCTION sdr_lock_contact(p_contact_key text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtextextended('sdr-lead:' || p_contact_key, 0))
$$;

CREATE OR REPLACE FUNCTION sdr_is_erased(p_contact_key text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM tombstones WHERE hash = sdr_erasure_hash('contact:' || p_contact_key))
$$;

-- sdr_add_inbound, now refusing (false, as a duplicate) a message of an erased contact or
-- one whose provider id was erased: a late or replayed webhook does not bring a lead back.
CREATE OR REPLACE FUNCTION sdr_add_inbound(
    p_channel text,
    p_provider_message_id text,
    p_contact_key text,
    p_message jsonb,
    p_status text DEFAULT 'pending',
    p_reason text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    PERFORM sdr_lock_contact(p_contact_key);
    IF EXISTS (
        SELECT 1 FROM tombstones
        WHERE hash IN (sdr_erasure_hash('contact:' || p_contact_key),
                       sdr_erasure_hash('message:' || p_provider_message_id))
    ) THEN
        RETURN false;
    END IF;
    INSERT INTO inbound (channel, provider_message_id, contact_key, message, status, reason, received_at)
    VALUES (p_channel, p_provider_message_id, p_contact_key, p_message, coalesce(p_status, 'pending'),
            p_reason, now())
    ON CONFLICT (channel, provider_message_id) DO NOTHING
    RETURNING id INTO v_id;
    RETURN v_id IS NOT NULL;
END
$$;

-- sdr_commit_turn_once, now writing nothing for a lead erased while its turn ran.
CREATE OR REPLACE FUNCTION sdr_commit_turn_once(p_request_id text, p_commit jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_claimed text;
    v_result jsonb;
BEGIN
    PERFORM sdr_lock_contact(p_commit ->> 'contact_key');
    IF sdr_is_erased(p_commit ->> 'contact_key') THEN
        RETURN '{"erased": true}'::jsonb;
    END IF;
    IF p_request_id IS NULL THEN
        RETURN sdr_commit_turn(p_commit);
    END IF;
    INSERT INTO turn_commits (request_id, turn_id) VALUES (p_request_id, p_commit ->> 'turn_id')
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id INTO v_claimed;
    IF v_claimed IS NULL THEN
        SELECT result INTO v_result FROM turn_commits WHERE request_id = p_request_id;
        RETURN coalesce(v_result, '{}'::jsonb) || '{"replayed": true}'::jsonb;
    END IF;
    v_result := sdr_commit_turn(p_commit);
    UPDATE turn_commits SET result = v_result WHERE request_id = p_request_id;
    -- Retries come within seconds; a day of records is plenty. Pruned now and then, not
    -- on every commit, so concurrent commits rarely touch the same old rows.
    IF random() < 0.01 THEN
        DELETE FROM turn_commits WHERE committed_at < now() - interval '1 day';
    END IF;
    RETURN v_result;
END
$$;

-- The LGPD erasure, like SqliteStore.forget_lead: every row of the lead and every outbox
-- item that names it (its lanes in p_order_keys, its per-endpoint webhook lanes, any
-- payload carrying its contact key or lead id), the tombstone, the anonymous audit row,
-- and one `lead_erasure` outbox item with the lead's ids in Chatwoot and PipeRun.
-- false (and nothing written) when the contact is unknown.
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
-- service role only (as 20261125000003_store_api.sql does for the earlier ones).
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
