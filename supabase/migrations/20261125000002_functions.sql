-- SDR bot functions, called through PostgREST `rpc` by the Supabase store.
-- Multi-step writes live here so one HTTP call is one transaction: a crash between
-- calls can never leave half a turn. Re-runnable (CREATE OR REPLACE).
-- Depends on 20261125000001_schema.sql.

-- Store a webhook message in the inbox; false when (channel, provider id) was already there.
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
    INSERT INTO inbound (channel, provider_message_id, contact_key, message, status, reason, received_at)
    VALUES (p_channel, p_provider_message_id, p_contact_key, p_message, coalesce(p_status, 'pending'),
            p_reason, now())
    ON CONFLICT (channel, provider_message_id) DO NOTHING
    RETURNING id INTO v_id;
    RETURN v_id IS NOT NULL;
END
$$;

-- One turn, all-or-nothing, exactly like SqliteStore.commit_turn. p_commit carries the
-- TurnCommit fields under their Python names (turn_id, contact_key, channel, contact_id,
-- phone, name, inbound_ids, messages[{direction, kind, text, provider_message_id, status,
-- media_url, ref}], profile, score, temperature, score_reasons, lead_messages_added,
-- outbox[{kind, order_key, idempotency_key, payload}], quotes[{products, quantity, summary}],
-- technical_questions[{question, context}], handoff{reason, summary}, opt_out, summary,
-- new_session, follow_up{due_at, attempt}, lead_wrote, fired_follow_up_id, at, referral).
-- Returns {"lead_id", "conversation_id", "message_ids": {ref: id}}.
CREATE OR REPLACE FUNCTION sdr_commit_turn(p_commit jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    c jsonb := p_commit;
    v_now timestamptz := now();
    v_turn_at timestamptz;
    v_lead_id bigint;
    v_conv_id bigint;
    v_msg jsonb;
    v_msg_id bigint;
    v_refs jsonb := '{}'::jsonb;
    v_item jsonb;
    v_payload jsonb;
    v_ref text;
    v_handoff jsonb := nullif(c -> 'handoff', 'null'::jsonb);
    v_follow_up jsonb := nullif(c -> 'follow_up', 'null'::jsonb);
    v_referral jsonb := nullif(c -> 'referral', 'null'::jsonb);
    v_lead_wrote boolean := coalesce((c ->> 'lead_wrote')::boolean, true);
    v_opt_out boolean := coalesce((c ->> 'opt_out')::boolean, false);
BEGIN
    IF c ->> 'contact_key' IS NULL OR c ->> 'turn_id' IS NULL THEN
        RAISE EXCEPTION 'sdr_commit_turn: turn_id and contact_key are required' USING ERRCODE = '22023';
    END IF;
    -- The runtime's clock for what it measures itself (sessions, follow-ups); audit and
    -- outbox timestamps stay on the database clock the dispatcher uses.
    v_turn_at := coalesce((c ->> 'at')::timestamptz, v_now);

    INSERT INTO leads (contact_key, channel, contact_id, phone, name, profile, score, temperature,
                       score_reasons, lead_message_count, created_at, updated_at)
    VALUES (c ->> 'contact_key', c ->> 'channel', c ->> 'contact_id', c ->> 'phone', c ->> 'name',
            coalesce(nullif(c -> 'profile', 'null'::jsonb), '{}'::jsonb),
            coalesce((c ->> 'score')::integer, 0),
            coalesce(c ->> 'temperature', 'frio'),
            coalesce(nullif(c -> 'score_reasons', 'null'::jsonb), '[]'::jsonb),
            coalesce((c ->> 'lead_messages_added')::integer, 0),
            v_now, v_now)
    ON CONFLICT (contact_key) DO UPDATE SET
        channel = excluded.channel,
        contact_id = excluded.contact_id,
        phone = coalesce(excluded.phone, leads.phone),
        name = coalesce(excluded.name, leads.name),
        profile = excluded.profile,
        score = excluded.score,
        temperature = excluded.temperature,
        score_reasons = excluded.score_reasons,
        lead_message_count = leads.lead_message_count + excluded.lead_message_count,
        updated_at = excluded.updated_at
    RETURNING id INTO v_lead_id;

    -- Lead changes (SqliteStore._apply_lead_changes).
    IF c ? 'summary' AND jsonb_typeof(c -> 'summary') <> 'null' THEN
        UPDATE leads SET summary = c ->> 'summary' WHERE id = v_lead_id;
    END IF;
    IF v_referral IS NOT NULL THEN
        UPDATE leads SET referral = coalesce(referral, v_referral) WHERE id = v_lead_id;
    END IF;
    IF v_lead_wrote THEN
        UPDATE leads SET last_inbound_at = v_turn_at WHERE id = v_lead_id;
    END IF;
    IF v_handoff IS NOT NULL THEN
        UPDATE leads SET handoff_state = 'requested', handoff_reason = v_handoff ->> 'reason',
                         handoff_summary = v_handoff ->> 'summary', handoff_at = v_turn_at
        WHERE id = v_lead_id;
    END IF;
    IF v_opt_out THEN
        UPDATE leads SET opted_out = true, opted_out_at = coalesce(opted_out_at, v_turn_at)
        WHERE id = v_lead_id;
    END IF;
    -- Whatever happened, the nudges scheduled before this turn are obsolete.
    UPDATE followups SET status = 'cancelled',
                         reason = CASE WHEN v_lead_wrote THEN 'lead_replied' ELSE 'replaced' END,
                         updated_at = v_turn_at
    WHERE lead_id = v_lead_id AND status = 'pending';
    IF nullif(c -> 'fired_follow_up_id', 'null'::jsonb) IS NOT NULL THEN
        UPDATE followups SET status = 'sent', reason = NULL, updated_at = v_turn_at
        WHERE id = (c ->> 'fired_follow_up_id')::bigint;
    END IF;
    IF v_follow_up IS NOT NULL AND NOT v_opt_out THEN
        INSERT INTO followups (lead_id, contact_key, attempt, due_at, status, scheduled_at, updated_at)
        VALUES (v_lead_id, c ->> 'contact_key', (v_follow_up ->> 'attempt')::integer,
                (v_follow_up ->> 'due_at')::timestamptz, 'pending', v_turn_at, v_turn_at);
    END IF;

    -- Conversation: reuse the newest, or start a new session.
    SELECT id INTO v_conv_id FROM conversations WHERE lead_id = v_lead_id ORDER BY id DESC LIMIT 1;
    IF v_conv_id IS NULL OR coalesce((c ->> 'new_session')::boolean, false) THEN
        INSERT INTO conversations (lead_id, channel, started_at, last_message_at)
        VALUES (v_lead_id, c ->> 'channel', v_turn_at, v_turn_at)
        RETURNING id INTO v_conv_id;
    ELSE
        UPDATE conversations SET last_message_at = v_turn_at WHERE id = v_conv_id;
    END IF;

    FOR v_msg IN SELECT value FROM jsonb_array_elements(coalesce(nullif(c -> 'messages', 'null'::jsonb), '[]'::jsonb)) LOOP
        INSERT INTO messages (conversation_id, lead_id, direction, kind, text, provider_message_id,
                              status, media_url, turn_id, created_at)
        VALUES (v_conv_id, v_lead_id, v_msg ->> 'direction', v_msg ->> 'kind', v_msg ->> 'text',
                v_msg ->> 'provider_message_id', v_msg ->> 'status', v_msg ->> 'media_url',
                c ->> 'turn_id', v_now)
        RETURNING id INTO v_msg_id;
        IF v_msg ->> 'ref' IS NOT NULL THEN
            v_refs := v_refs || jsonb_build_object(v_msg ->> 'ref', v_msg_id);
        END IF;
    END LOOP;

    IF jsonb_array_length(coalesce(nullif(c -> 'inbound_ids', 'null'::jsonb), '[]'::jsonb)) > 0 THEN
        UPDATE inbound SET status = 'done', processed_at = v_now
        WHERE id IN (SELECT value::bigint FROM jsonb_array_elements_text(c -> 'inbound_ids'));
    END IF;

    FOR v_item IN SELECT value FROM jsonb_array_elements(coalesce(nullif(c -> 'quotes', 'null'::jsonb), '[]'::jsonb)) LOOP
        INSERT INTO orcamentos (lead_id, conversation_id, products, quantity, summary, turn_id, created_at)
        VALUES (v_lead_id, v_conv_id, coalesce(v_item -> 'products', '[]'::jsonb), v_item ->> 'quantity',
                v_item ->> 'summary', c ->> 'turn_id', v_now);
    END LOOP;

    FOR v_item IN SELECT value FROM jsonb_array_elements(coalesce(nullif(c -> 'technical_questions', 'null'::jsonb), '[]'::jsonb)) LOOP
        INSERT INTO technical_questions (lead_id, conversation_id, question, context, turn_id, created_at)
        VALUES (v_lead_id, v_conv_id, v_item ->> 'question', v_item ->> 'context', c ->> 'turn_id', v_now);
    END LOOP;

    FOR v_item IN SELECT value FROM jsonb_array_elements(coalesce(nullif(c -> 'outbox', 'null'::jsonb), '[]'::jsonb)) LOOP
        v_payload := coalesce(nullif(v_item -> 'payload', 'null'::jsonb), '{}'::jsonb);
        IF v_payload ? 'message_ref' THEN
            v_ref := v_payload ->> 'message_ref';
            v_payload := v_payload - 'message_ref';
            IF v_ref IS NOT NULL THEN
                IF NOT v_refs ? v_ref THEN
                    RAISE EXCEPTION 'sdr_commit_turn: outbox item % references unknown message_ref %',
                        v_item ->> 'idempotency_key', v_ref USING ERRCODE = '22023';
                END IF;
                v_payload := v_payload || jsonb_build_object('message_id', v_refs -> v_ref);
            END IF;
        END IF;
        IF NOT v_payload ? 'lead_id' THEN
            v_payload := v_payload || jsonb_build_object('lead_id', v_lead_id);
        END IF;
        INSERT INTO outbox (kind, order_key, idempotency_key, payload, status, next_attempt_at,
                            created_at, updated_at)
        VALUES (v_item ->> 'kind', v_item ->> 'order_key', v_item ->> 'idempotency_key', v_payload,
                'pending', v_now, v_now, v_now)
        ON CONFLICT (idempotency_key) DO NOTHING;
    END LOOP;

    RETURN jsonb_build_object('lead_id', v_lead_id, 'conversation_id', v_conv_id, 'message_ids', v_refs);
END
$$;

-- Claim due outbox items: at most one per order_key and only its head (lowest open id),
-- so a later reply never overtakes an earlier one still retrying. Items go inflight with
-- a lease; an inflight item whose lease expired (its instance died) is claimable again.
-- SKIP LOCKED: concurrent claimers never get the same row and never wait on each other.
CREATE OR REPLACE FUNCTION sdr_claim_outbox(p_limit integer, p_lease_seconds integer)
RETURNS SETOF outbox
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH candidates AS (
        SELECT o.id
        FROM outbox o
        WHERE ((o.status = 'pending' AND o.next_attempt_at <= now())
               OR (o.status = 'inflight' AND o.lease_expires_at IS NOT NULL AND o.lease_expires_at <= now()))
          AND NOT EXISTS (
              SELECT 1 FROM outbox p
              WHERE p.order_key = o.order_key AND p.id < o.id AND p.status IN ('pending', 'inflight'))
        ORDER BY o.next_attempt_at, o.id
        LIMIT greatest(p_limit, 0)
        FOR UPDATE OF o SKIP LOCKED
    )
    UPDATE outbox u
    SET status = 'inflight',
        attempts = u.attempts + 1,
        lease_expires_at = now() + make_interval(secs => greatest(p_lease_seconds, 1)),
        updated_at = now()
    FROM candidates
    WHERE u.id = candidates.id
    RETURNING u.*;
END
$$;

-- Per-lead turn lease: true when p_owner holds the lease afterwards (new, renewed, or
-- taken over from an owner whose lease expired).
CREATE OR REPLACE FUNCTION sdr_claim_contact(p_contact_key text, p_owner text, p_lease_seconds integer)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_owner text;
BEGIN
    INSERT INTO turn_leases AS l (contact_key, owner, expires_at, acquired_at, updated_at)
    VALUES (p_contact_key, p_owner, now() + make_interval(secs => greatest(p_lease_seconds, 1)), now(), now())
    ON CONFLICT (contact_key) DO UPDATE
        SET owner = excluded.owner,
            expires_at = excluded.expires_at,
            acquired_at = CASE WHEN l.owner = excluded.owner THEN l.acquired_at ELSE excluded.acquired_at END
        WHERE l.owner = excluded.owner OR l.expires_at <= now()
    RETURNING owner INTO v_owner;
    RETURN v_owner IS NOT NULL AND v_owner = p_owner;
END
$$;

-- Give a lead's turn lease back; true when p_owner held it.
CREATE OR REPLACE FUNCTION sdr_release_contact(p_contact_key text, p_owner text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_key text;
BEGIN
    DELETE FROM turn_leases WHERE contact_key = p_contact_key AND owner = p_owner
    RETURNING contact_key INTO v_key;
    RETURN v_key IS NOT NULL;
END
$$;

-- Cross-instance debounce: contacts whose newest pending message is older than the quiet
-- window, or whose oldest pending message waited longer than the max wait, and whose
-- turn is not leased; each returned contact is leased to p_owner (oldest first).
CREATE OR REPLACE FUNCTION sdr_claim_pending_contacts(
    p_owner text,
    p_limit integer,
    p_quiet_seconds double precision,
    p_max_wait_seconds double precision,
    p_lease_seconds integer
) RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH ready AS (
        SELECT i.contact_key, min(i.id) AS first_id
        FROM inbound i
        WHERE i.status = 'pending'
        GROUP BY i.contact_key
        HAVING max(i.received_at) <= now() - make_interval(secs => p_quiet_seconds)
            OR min(i.received_at) <= now() - make_interval(secs => p_max_wait_seconds)
    ), free AS (
        SELECT r.contact_key, r.first_id
        FROM ready r
        WHERE NOT EXISTS (
            SELECT 1 FROM turn_leases l WHERE l.contact_key = r.contact_key AND l.expires_at > now())
        ORDER BY r.first_id
        LIMIT greatest(p_limit, 0)
    ), leased AS (
        INSERT INTO turn_leases AS l (contact_key, owner, expires_at, acquired_at, updated_at)
        SELECT f.contact_key, p_owner, now() + make_interval(secs => greatest(p_lease_seconds, 1)), now(), now()
        FROM free f
        ORDER BY f.first_id
        ON CONFLICT (contact_key) DO UPDATE
            SET owner = excluded.owner, expires_at = excluded.expires_at, acquired_at = excluded.acquired_at
            WHERE l.expires_at <= now()
        RETURNING l.contact_key
    )
    SELECT leased.contact_key FROM leased JOIN free USING (contact_key) ORDER BY free.first_id;
END
$$;

-- LGPD erasure: delete everything about a contact and write one anonymous audit row.
-- False when nothing was known about the contact.
CREATE OR REPLACE FUNCTION sdr_forget_lead(p_contact_key text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_lead leads%ROWTYPE;
    v_first_channel text;
    v_inbound integer;
    v_outbox integer;
    v_n integer;
    v_counts jsonb;
BEGIN
    SELECT * INTO v_lead FROM leads WHERE contact_key = p_contact_key FOR UPDATE;
    SELECT channel INTO v_first_channel FROM inbound WHERE contact_key = p_contact_key ORDER BY id LIMIT 1;
    DELETE FROM inbound WHERE contact_key = p_contact_key;
    GET DIAGNOSTICS v_inbound = ROW_COUNT;
    DELETE FROM outbox WHERE order_key = 'reply:' || p_contact_key;
    GET DIAGNOSTICS v_outbox = ROW_COUNT;
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
    DELETE FROM turn_leases WHERE contact_key = p_contact_key;
    -- The audit row proves the erasure happened without saying who it was about.
    INSERT INTO erasures (channel, erased_at, lead_created_at, temperature, rows_deleted)
    VALUES (coalesce(v_lead.channel, v_first_channel), now(), v_lead.created_at, v_lead.temperature, v_counts);
    RETURN true;
END
$$;

-- Pin search_path to the schema the migration ran in (Supabase's linter flags mutable
-- search_path), and expose the functions to the service role only.
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
