-- SDR bot, issue 17: the meetings booked on a seller's calendar (runtime/meetings.py),
-- kept for reschedule, cancel and reminders; the same rules as store/sqlite/meetings.py.
--
-- * meetings: one row per calendar event, keyed by our own event id (the one given to
--   Google), so saving the same event again never adds a row;
-- * sdr_save_meeting: the upsert. A new row, or the known one with its status, times,
--   links (a NULL link keeps the stored one) and updated_at changed; contact, seller,
--   calendar and created_at stay; a new start clears reminders_sent (they were for the
--   old time). false, and nothing written, for an erased contact: under the contact
--   lock, so it cannot race sdr_erase_lead;
-- * sdr_due_meetings: the scheduled meetings not yet started that start by p_horizon
--   (the store picks, per meeting, the reminder due: store.base.due_reminder);
-- * sdr_mark_reminder_sent: adds a reminder's name to reminders_sent, once;
-- * sdr_erase_lead: as in 20261203000001_sellers.sql, plus the lead's meetings.
--
-- Re-runnable (IF NOT EXISTS, CREATE OR REPLACE, guarded DO blocks). Depends on the
-- earlier files (sdr_lock_contact, sdr_is_erased, sdr_touch_updated_at) and replaces
-- their sdr_erase_lead (same signature, so the store's request does not change).

-- ---------------------------------------------------------------------------------
-- Tables

CREATE TABLE IF NOT EXISTS meetings (
    event_id text PRIMARY KEY,
    contact_key text NOT NULL,
    seller_key text NOT NULL,
    calendar_id text NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'cancelled')),
    meet_url text,
    html_link text,
    reminders_sent text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE meetings IS
    'Meetings booked on a seller''s calendar, keyed by our own event id, with the reminders already sent; deleted with the lead on erasure.';

CREATE INDEX IF NOT EXISTS meetings_lead ON meetings (contact_key, starts_at);
CREATE INDEX IF NOT EXISTS meetings_upcoming ON meetings (starts_at) WHERE status = 'scheduled';

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['meetings'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION sdr_touch_updated_at()',
            t || '_updated_at', t);
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

-- ---------------------------------------------------------------------------------
-- Functions

-- Store the meeting p_event_id (see the header); true when stored, false for an erased
-- contact.
CREATE OR REPLACE FUNCTION sdr_save_meeting(
    p_event_id text,
    p_contact_key text,
    p_seller_key text,
    p_calendar_id text,
    p_starts_at timestamptz,
    p_ends_at timestamptz,
    p_status text DEFAULT 'scheduled',
    p_meet_url text DEFAULT NULL,
    p_html_link text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sdr_lock_contact(p_contact_key);
    IF sdr_is_erased(p_contact_key) THEN
        RETURN false;
    END IF;
    INSERT INTO meetings (event_id, contact_key, seller_key, calendar_id, starts_at, ends_at, status,
                          meet_url, html_link)
    VALUES (p_event_id, p_contact_key, p_seller_key, p_calendar_id, p_starts_at, p_ends_at,
            coalesce(p_status, 'scheduled'), p_meet_url, p_html_link)
    ON CONFLICT (event_id) DO UPDATE SET
        reminders_sent = CASE WHEN meetings.starts_at = excluded.starts_at THEN meetings.reminders_sent
                              ELSE '{}' END,
        starts_at = excluded.starts_at,
        ends_at = excluded.ends_at,
        status = excluded.status,
        meet_url = coalesce(excluded.meet_url, meetings.meet_url),
        html_link = coalesce(excluded.html_link, meetings.html_link),
        updated_at = now();
    RETURN true;
END
$$;

-- The scheduled meetings with a start in (p_now, p_horizon], soonest first.
CREATE OR REPLACE FUNCTION sdr_due_meetings(p_now timestamptz, p_horizon timestamptz)
RETURNS SETOF meetings
LANGUAGE sql STABLE AS $$
    SELECT * FROM meetings
    WHERE status = 'scheduled' AND starts_at > p_now AND starts_at <= p_horizon
    ORDER BY starts_at, event_id;
$$;

-- Add p_which to the meeting's reminders_sent, once; true when it was added.
CREATE OR REPLACE FUNCTION sdr_mark_reminder_sent(p_event_id text, p_which text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE meetings SET reminders_sent = array_append(reminders_sent, p_which)
    WHERE event_id = p_event_id AND NOT (p_which = ANY (reminders_sent));
    RETURN FOUND;
END
$$;

-- sdr_erase_lead of 20261203000001_sellers.sql with one line more (after
-- seller_assignments): the lead's meetings go too. The LGPD erasure, like
-- SqliteStore.forget_lead: every row of the lead and every outbox item that names it (its
-- lanes in p_order_keys, its per-endpoint webhook lanes, any payload carrying its contact
-- key or lead id), the tombstone, the anonymous audit row, and one `lead_erasure` outbox
-- item with the lead's ids in Chatwoot and PipeRun. false (and nothing written) when the
-- contact is unknown.
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
    DELETE FROM meetings WHERE contact_key = p_contact_key;
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
