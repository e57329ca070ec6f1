-- SDR bot store API: what the Supabase store (integrations/store/supabase.py) needs on
-- top of the schema and the first functions: CRM link columns, outbox claims owned by an
-- instance, an idempotency record for turn commits, and one rpc function per store
-- method that is more than a single-table read or a plain single-row update.
--
-- Re-runnable (ADD COLUMN IF NOT EXISTS, CREATE OR REPLACE, guarded DO blocks).
-- Depends on 20261125000001_schema.sql and 20261125000002_functions.sql.

-- ---------------------------------------------------------------------------------
-- Columns and tables

-- Where a lead lives in PipeRun once it was pushed there (person, company, deal).
ALTER TABLE leads ADD COLUMN IF NOT EXISTS crm_person_id bigint;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS crm_company_id bigint;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS crm_deal_id bigint;
CREATE INDEX IF NOT EXISTS leads_crm_deal ON leads (crm_deal_id) WHERE crm_deal_id IS NOT NULL;
COMMENT ON COLUMN leads.crm_deal_id IS 'PipeRun deal of the lead; CRM webhooks find the lead by it.';

-- The instance that holds an inflight item: on restart it takes back only its own
-- items (and expired leases), never those another live instance is delivering.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claimed_by text;
COMMENT ON COLUMN outbox.claimed_by IS 'Instance holding the inflight item (with lease_expires_at); NULL when not inflight.';
CREATE INDEX IF NOT EXISTS outbox_status_kind ON outbox (status, kind);
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (id) WHERE status = 'dead';

-- One row per commit request: a retried HTTP call whose first attempt did commit (the
-- answer was lost) returns the recorded result instead of writing the turn twice.
CREATE TABLE IF NOT EXISTS turn_commits (
    request_id text PRIMARY KEY,
    turn_id text,
    result jsonb,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS turn_commits_committed_at ON turn_commits (committed_at);
COMMENT ON TABLE turn_commits IS
    'Idempotency record of sdr_commit_turn_once calls (request id -> result, ids only, no personal data); pruned after a day.';

DO $$
BEGIN
    ALTER TABLE turn_commits ENABLE ROW LEVEL SECURITY;
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = current_schema() AND tablename = 'turn_commits' AND policyname = 'service_role_all'
    ) THEN
        CREATE POLICY service_role_all ON turn_commits AS PERMISSIVE FOR ALL TO service_role
            USING (true) WITH CHECK (true);
    END IF;
    GRANT ALL ON TABLE turn_commits TO service_role;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON TABLE turn_commits FROM anon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE ALL ON TABLE turn_commits FROM authenticated;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------
-- Inbox

-- Contacts with messages waiting, in order of their oldest waiting message, as one JSON
-- array: a SETOF answer would be cut at PostgREST's max-rows (1000 on Supabase).
CREATE OR REPLACE FUNCTION sdr_pending_contacts() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(pending.contact_key ORDER BY pending.first_id), '[]'::jsonb)
    FROM (SELECT contact_key, min(id) AS first_id FROM inbound WHERE status = 'pending' GROUP BY contact_key) pending
$$;

-- A failed turn: one more attempt on each of its messages, which stay pending.
CREATE OR REPLACE FUNCTION sdr_record_turn_failure(p_inbound_ids bigint[], p_error text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    UPDATE inbound SET attempts = attempts + 1, last_error = left(p_error, 500)
    WHERE id = ANY (coalesce(p_inbound_ids, '{}'));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- ---------------------------------------------------------------------------------
-- Leads and history

-- A lead (by contact key, Chatwoot conversation or PipeRun deal) with its current
-- conversation, as one JSON object; NULL when unknown.
CREATE OR REPLACE FUNCTION sdr_get_lead(
    p_contact_key text DEFAULT NULL,
    p_chatwoot_conversation_id bigint DEFAULT NULL,
    p_crm_deal_id bigint DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_lead leads%ROWTYPE;
    v_conv conversations%ROWTYPE;
BEGIN
    IF p_contact_key IS NOT NULL THEN
        SELECT * INTO v_lead FROM leads WHERE contact_key = p_contact_key;
    ELSIF p_chatwoot_conversation_id IS NOT NULL THEN
        SELECT * INTO v_lead FROM leads WHERE chatwoot_conversation_id = p_chatwoot_conversation_id
        ORDER BY id LIMIT 1;
    ELSIF p_crm_deal_id IS NOT NULL THEN
        SELECT * INTO v_lead FROM leads WHERE crm_deal_id = p_crm_deal_id ORDER BY id LIMIT 1;
    END IF;
    IF v_lead.id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_conv FROM conversations WHERE lead_id = v_lead.id ORDER BY id DESC LIMIT 1;
    RETURN to_jsonb(v_lead) || jsonb_build_object(
        'conversation_id', v_conv.id,
        'conversation_started_at', v_conv.started_at,
        'conversation_last_message_at', v_conv.last_message_at);
END
$$;

-- The last p_limit messages of the lead's current conversation, oldest first.
CREATE OR REPLACE FUNCTION sdr_recent_messages(p_contact_key text, p_limit integer) RETURNS SETOF messages
LANGUAGE sql STABLE AS $$
    SELECT recent.* FROM (
        SELECT m.* FROM messages m JOIN leads l ON l.id = m.lead_id
        WHERE l.contact_key = p_contact_key
          AND m.conversation_id = (SELECT max(c.id) FROM conversations c WHERE c.lead_id = l.id)
        ORDER BY m.id DESC
        LIMIT greatest(p_limit, 0)
    ) recent
    ORDER BY recent.id
$$;

-- sdr_commit_turn, once per request id: the store retries a commit whose answer was
-- lost (timeout, 502 from a proxy) with the same id, and must not write the turn twice.
-- A concurrent duplicate waits on the request_id key until the first one commits.
CREATE OR REPLACE FUNCTION sdr_commit_turn_once(p_request_id text, p_commit jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_claimed text;
    v_result jsonb;
BEGIN
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

-- The quotes (orcamentos) of a lead, oldest first.
CREATE OR REPLACE FUNCTION sdr_lead_quotes(p_contact_key text) RETURNS SETOF orcamentos
LANGUAGE sql STABLE AS $$
    SELECT o.* FROM orcamentos o JOIN leads l ON l.id = o.lead_id
    WHERE l.contact_key = p_contact_key ORDER BY o.id
$$;

-- The technical questions of a lead, oldest first.
CREATE OR REPLACE FUNCTION sdr_lead_technical_questions(p_contact_key text) RETURNS SETOF technical_questions
LANGUAGE sql STABLE AS $$
    SELECT q.* FROM technical_questions q JOIN leads l ON l.id = q.lead_id
    WHERE l.contact_key = p_contact_key ORDER BY q.id
$$;

-- A reply went out: its provider id, and "sent" unless a later status already arrived.
CREATE OR REPLACE FUNCTION sdr_mark_message_sent(p_message_id bigint, p_provider_message_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages
    SET status = CASE WHEN status IN ('delivered', 'read', 'played') THEN status ELSE 'sent' END,
        provider_message_id = coalesce(p_provider_message_id, provider_message_id)
    WHERE id = p_message_id;
    RETURN FOUND;
END
$$;

-- A provider's delivery report on one of our messages; a late report never moves a
-- message back (a "delivered" after "read"), a failure always lands. False when the
-- provider id is not one of our outgoing messages.
CREATE OR REPLACE FUNCTION sdr_record_delivery_status(
    p_provider_message_id text,
    p_status text,
    p_error text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_rank constant jsonb := '{"queued": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}';
    v_id bigint;
    v_status text;
BEGIN
    SELECT id, status INTO v_id, v_status FROM messages
    WHERE provider_message_id = p_provider_message_id AND direction = 'out'
    ORDER BY id DESC LIMIT 1
    FOR UPDATE;
    IF v_id IS NULL THEN
        RETURN false;
    END IF;
    IF coalesce((v_rank ->> p_status)::integer, 0) < coalesce((v_rank ->> coalesce(v_status, 'queued'))::integer, 0)
       AND p_status <> 'failed' THEN
        RETURN true;
    END IF;
    UPDATE messages SET status = p_status, error = coalesce(nullif(left(p_error, 500), ''), error)
    WHERE id = v_id;
    RETURN true;
END
$$;

-- The contact key of the lead one of our sent messages went to.
CREATE OR REPLACE FUNCTION sdr_message_contact(p_provider_message_id text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT l.contact_key FROM messages m JOIN leads l ON l.id = m.lead_id
    WHERE m.provider_message_id = p_provider_message_id AND m.direction = 'out'
    ORDER BY m.id DESC LIMIT 1
$$;

-- A handoff asked for outside a turn; the first request's reason and summary win.
CREATE OR REPLACE FUNCTION sdr_request_handoff(p_contact_key text, p_reason text, p_summary text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE leads
    SET handoff_state = coalesce(handoff_state, 'requested'),
        handoff_reason = coalesce(handoff_reason, p_reason),
        handoff_summary = coalesce(handoff_summary, p_summary),
        handoff_at = coalesce(handoff_at, now())
    WHERE contact_key = p_contact_key;
    RETURN FOUND;
END
$$;

-- A message the business sent to the lead (phone, app, echo). True when it was not one
-- of the bot's own (same provider id, or, since an echo can beat the send call's answer,
-- the same text sent to this lead in the last ten minutes): the bot pauses until
-- p_pause_until. p_text comes already trimmed. An unknown contact becomes a paused lead.
CREATE OR REPLACE FUNCTION sdr_note_business_message(
    p_contact_key text,
    p_provider_message_id text,
    p_text text,
    p_pause_until timestamptz
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_lead_id bigint;
    v_colon integer := strpos(p_contact_key, ':');
BEGIN
    SELECT id INTO v_lead_id FROM leads WHERE contact_key = p_contact_key FOR UPDATE;
    IF v_lead_id IS NULL THEN
        INSERT INTO leads (contact_key, channel, contact_id, paused_until)
        VALUES (p_contact_key,
                CASE WHEN v_colon > 0 THEN left(p_contact_key, v_colon - 1) ELSE p_contact_key END,
                CASE WHEN v_colon > 0 THEN substr(p_contact_key, v_colon + 1) ELSE '' END,
                p_pause_until)
        ON CONFLICT (contact_key) DO NOTHING;
        RETURN true;
    END IF;
    IF EXISTS (
        SELECT 1 FROM messages
        WHERE lead_id = v_lead_id AND direction = 'out'
          AND (provider_message_id = p_provider_message_id
               OR (text = coalesce(p_text, '') AND created_at >= now() - interval '10 minutes'))
    ) THEN
        RETURN false;
    END IF;
    UPDATE leads SET paused_until = greatest(paused_until, p_pause_until) WHERE id = v_lead_id;
    RETURN true;
END
$$;

-- Whether a Chatwoot message is one the bot created: by its id, or (Chatwoot's webhook
-- can beat our own bookkeeping of the id) a not-yet-linked bot message with the same
-- text for the lead of that conversation. p_text comes already trimmed.
CREATE OR REPLACE FUNCTION sdr_is_own_chatwoot_message(
    p_chatwoot_message_id bigint,
    p_conversation_id bigint DEFAULT NULL,
    p_text text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM messages
        WHERE chatwoot_message_id = p_chatwoot_message_id AND coalesce(turn_id, '') <> 'human'
    ) THEN
        RETURN true;
    END IF;
    IF p_conversation_id IS NULL OR p_text IS NULL THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT 1 FROM messages m JOIN leads l ON l.id = m.lead_id
        WHERE l.chatwoot_conversation_id = p_conversation_id AND m.direction = 'out'
          AND m.chatwoot_message_id IS NULL AND coalesce(m.turn_id, '') <> 'human'
          AND m.text = p_text
    );
END
$$;

-- A sales person's Chatwoot reply, stored as an outgoing message of the lead's current
-- conversation; NULL when that Chatwoot message is already known (or no conversation).
CREATE OR REPLACE FUNCTION sdr_record_human_reply(
    p_contact_key text,
    p_text text,
    p_chatwoot_message_id bigint
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_lead_id bigint;
    v_conv_id bigint;
    v_id bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM messages WHERE chatwoot_message_id = p_chatwoot_message_id) THEN
        RETURN NULL;
    END IF;
    SELECT id INTO v_lead_id FROM leads WHERE contact_key = p_contact_key;
    IF v_lead_id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT id INTO v_conv_id FROM conversations WHERE lead_id = v_lead_id ORDER BY id DESC LIMIT 1;
    IF v_conv_id IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO messages (conversation_id, lead_id, direction, kind, text, status, chatwoot_message_id,
                          turn_id, created_at)
    VALUES (v_conv_id, v_lead_id, 'out', 'text', p_text, 'queued', p_chatwoot_message_id, 'human', now())
    ON CONFLICT (chatwoot_message_id) WHERE chatwoot_message_id IS NOT NULL DO NOTHING
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- ---------------------------------------------------------------------------------
-- Outbox

-- A side effect outside a turn; false when the idempotency key was already enqueued.
CREATE OR REPLACE FUNCTION sdr_enqueue(
    p_kind text,
    p_order_key text,
    p_idempotency_key text,
    p_payload jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO outbox (kind, order_key, idempotency_key, payload, status, next_attempt_at)
    VALUES (p_kind, p_order_key, p_idempotency_key, coalesce(p_payload, '{}'::jsonb), 'pending', now())
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO v_id;
    RETURN v_id IS NOT NULL;
END
$$;

-- Claim due items for p_owner, like sdr_claim_outbox (heads of their order key only,
-- SKIP LOCKED, expired leases reclaimable), in due order. "Due" is measured at p_now,
-- the caller's clock, which may look ahead but never lags the database clock that
-- stamped new items (a skewed app clock must not hold fresh replies back).
CREATE OR REPLACE FUNCTION sdr_claim_outbox_for(
    p_owner text,
    p_limit integer,
    p_now timestamptz,
    p_lease_seconds double precision
) RETURNS SETOF outbox
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH candidates AS (
        SELECT o.id
        FROM outbox o
        WHERE ((o.status = 'pending' AND o.next_attempt_at <= greatest(coalesce(p_now, now()), now()))
               OR (o.status = 'inflight' AND o.lease_expires_at IS NOT NULL AND o.lease_expires_at <= now()))
          AND NOT EXISTS (
              SELECT 1 FROM outbox p
              WHERE p.order_key = o.order_key AND p.id < o.id AND p.status IN ('pending', 'inflight'))
        ORDER BY o.next_attempt_at, o.id
        LIMIT greatest(p_limit, 0)
        FOR UPDATE OF o SKIP LOCKED
    ), claimed AS (
        UPDATE outbox u
        SET status = 'inflight',
            attempts = u.attempts + 1,
            claimed_by = p_owner,
            lease_expires_at = now() + make_interval(secs => greatest(p_lease_seconds, 0.001)),
            updated_at = now()
        FROM candidates
        WHERE u.id = candidates.id
        RETURNING u.*
    )
    SELECT * FROM claimed ORDER BY claimed.next_attempt_at, claimed.id;
END
$$;

-- On start: items p_owner left in flight (it restarted), and items whose lease expired
-- (their instance died), go back to pending. Live leases of other instances stay.
CREATE OR REPLACE FUNCTION sdr_release_outbox(p_owner text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    UPDATE outbox SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL
    WHERE status = 'inflight'
      AND (claimed_by = p_owner OR lease_expires_at IS NULL OR lease_expires_at <= now());
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- When the next claimable item is due: the earliest pending head of an order key, or
-- now for an inflight item whose lease expired. NULL when nothing can become due.
CREATE OR REPLACE FUNCTION sdr_next_outbox_due() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least(
        (SELECT min(o.next_attempt_at) FROM outbox o
         WHERE o.status = 'pending'
           AND NOT EXISTS (
               SELECT 1 FROM outbox p
               WHERE p.order_key = o.order_key AND p.id < o.id AND p.status IN ('pending', 'inflight'))),
        (SELECT min(o.lease_expires_at) FROM outbox o
         WHERE o.status = 'inflight' AND o.lease_expires_at <= now()))
$$;

-- Item counts per kind and status: {"send_text": {"pending": 2, "dead": 1}, ...}.
CREATE OR REPLACE FUNCTION sdr_outbox_stats() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(per_kind.kind, per_kind.counts), '{}'::jsonb)
    FROM (
        SELECT counted.kind, jsonb_object_agg(counted.status, counted.n) AS counts
        FROM (SELECT kind, status, count(*) AS n FROM outbox GROUP BY kind, status) counted
        GROUP BY counted.kind
    ) per_kind
$$;

-- Dead items (of one kind, or all) back to pending with a fresh round of attempts.
CREATE OR REPLACE FUNCTION sdr_replay_dead(p_kind text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),
                      claimed_by = NULL, lease_expires_at = NULL
    WHERE status = 'dead' AND (p_kind IS NULL OR kind = p_kind);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- One dead item back to pending, same idempotency key; false unless it was dead.
CREATE OR REPLACE FUNCTION sdr_replay_outbox(p_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),
                      claimed_by = NULL, lease_expires_at = NULL
    WHERE id = p_id AND status = 'dead';
    RETURN FOUND;
END
$$;

-- Back to pending without spending an attempt (circuit open, shutting down): the claim
-- that counted one never reached the integration.
CREATE OR REPLACE FUNCTION sdr_defer_outbox(p_id bigint, p_next_attempt_at timestamptz, p_reason text)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox SET status = 'pending', attempts = greatest(attempts - 1, 0),
                      next_attempt_at = p_next_attempt_at, last_error = left(p_reason, 1000),
                      claimed_by = NULL, lease_expires_at = NULL
    WHERE id = p_id AND status = 'inflight';
    RETURN FOUND;
END
$$;

-- ---------------------------------------------------------------------------------
-- Turn leases (several instances), with sub-second leases allowed

-- Like sdr_claim_contact, with a fractional lease: true when p_owner holds the lease
-- afterwards (new, renewed, or taken over from an owner whose lease expired).
CREATE OR REPLACE FUNCTION sdr_lease_contact(p_contact_key text, p_owner text, p_lease_seconds double precision)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_owner text;
BEGIN
    INSERT INTO turn_leases AS l (contact_key, owner, expires_at, acquired_at, updated_at)
    VALUES (p_contact_key, p_owner, now() + make_interval(secs => greatest(p_lease_seconds, 0.001)), now(), now())
    ON CONFLICT (contact_key) DO UPDATE
        SET owner = excluded.owner,
            expires_at = excluded.expires_at,
            acquired_at = CASE WHEN l.owner = excluded.owner THEN l.acquired_at ELSE excluded.acquired_at END
        WHERE l.owner = excluded.owner OR l.expires_at <= now()
    RETURNING owner INTO v_owner;
    RETURN v_owner IS NOT NULL AND v_owner = p_owner;
END
$$;

-- Like sdr_claim_pending_contacts, with a fractional lease, and a contact whose lease
-- p_owner already holds counts as free for it (renewed), as in SqliteStore: contacts whose
-- burst is over (quiet for p_quiet_seconds, or first message older than
-- p_max_wait_seconds) and whose turn no other live owner holds, leased to p_owner,
-- oldest first. Concurrent callers never get the same contact: the lease upsert of the
-- second waits for the first and then finds a live lease of another owner.
CREATE OR REPLACE FUNCTION sdr_claim_ready_contacts(
    p_owner text,
    p_limit integer,
    p_quiet_seconds double precision,
    p_max_wait_seconds double precision,
    p_lease_seconds double precision
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
            SELECT 1 FROM turn_leases l
            WHERE l.contact_key = r.contact_key AND l.expires_at > now() AND l.owner <> p_owner)
        ORDER BY r.first_id
        LIMIT greatest(p_limit, 0)
    ), leased AS (
        INSERT INTO turn_leases AS l (contact_key, owner, expires_at, acquired_at, updated_at)
        SELECT f.contact_key, p_owner, now() + make_interval(secs => greatest(p_lease_seconds, 0.001)), now(), now()
        FROM free f
        ORDER BY f.first_id
        ON CONFLICT (contact_key) DO UPDATE
            SET owner = excluded.owner,
                expires_at = excluded.expires_at,
                acquired_at = CASE WHEN l.owner = excluded.owner THEN l.acquired_at ELSE excluded.acquired_at END
            WHERE l.owner = excluded.owner OR l.expires_at <= now()
        RETURNING l.contact_key
    )
    SELECT leased.contact_key FROM leased JOIN free USING (contact_key) ORDER BY free.first_id;
END
$$;

-- ---------------------------------------------------------------------------------
-- Metrics and erasure

-- Leads per temperature: {"frio": 12, "morno": 3, "quente": 1}.
CREATE OR REPLACE FUNCTION sdr_lead_counts() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(counted.temperature, counted.n), '{}'::jsonb)
    FROM (SELECT temperature, count(*) AS n FROM leads GROUP BY temperature) counted
$$;

-- LGPD erasure, like sdr_forget_lead, but every outbox lane of the lead goes: the store
-- passes the lane keys (integrations/store/base.py OUTBOX_LANES), since every lane's
-- payloads carry messages and contact data. False when nothing was known about the
-- contact (its lane items, if any, are still gone).
CREATE OR REPLACE FUNCTION sdr_erase_lead(p_contact_key text, p_order_keys text[]) RETURNS boolean
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
    DELETE FROM outbox WHERE order_key = ANY (coalesce(p_order_keys, '{}'));
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
    -- The audit row proves the erasure happened without saying who it was about.
    INSERT INTO erasures (channel, erased_at, lead_created_at, temperature, rows_deleted)
    VALUES (coalesce(v_lead.channel, v_first_channel), now(), v_lead.created_at, v_lead.temperature, v_counts);
    RETURN true;
END
$$;

-- ---------------------------------------------------------------------------------
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
