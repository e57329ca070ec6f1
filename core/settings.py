"""The one configuration object of the process.

Built once by the app factory (or the CLI) and passed down; modules never read the
environment themselves, so tests can build any configuration without monkeypatching.
Names follow the original design documents (see ../shared/DESIGN.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.paths import PROJECT_ROOT


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- server -------------------------------------------------------------------
    port: int = 8080
    host: str = "0.0.0.0"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"
    max_body_bytes: int = 1_048_576
    # `python main.py` answers webhooks in one process and runs turns and deliveries in a
    # supervised child, so acknowledgements never wait behind a turn. false: one process.
    worker_process: bool = True
    # The bot's public base URL (https://bot.example.com): `main.py doctor` prints the
    # webhook URLs to paste into each provider from it.
    public_url: str | None = None
    # Bearer token for /metrics and the detailed /api/health; unset: both stay open (a
    # bare liveness answer at /api/health?live is always public).
    metrics_token: SecretStr | None = None
    # The sales dashboard at /dashboard?token=... (or Authorization: Bearer); unset: the
    # METRICS_TOKEN opens it; neither: the dashboard is closed.
    dashboard_token: SecretStr | None = None

    # --- store --------------------------------------------------------------------
    sqlite_path: Path = PROJECT_ROOT / "data" / "sdr.sqlite3"

    # --- OpenAI -------------------------------------------------------------------
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o"
    openai_transcribe_model: str = "whisper-1"
    openai_timeout_s: float = 30.0
    openai_max_attempts: int = 4
    openai_backoff_base_s: float = 1.0
    # R$ per US$ for the dashboard's cost figures (model prices are in US$: core/prices.py).
    brl_per_usd: float = Field(default=5.0, gt=0)
    # Knowledge (prompts/knowledge/) over this many tokens is not sent whole: each turn gets
    # only its KNOWLEDGE_TOP_K most relevant chunks, found with EMBEDDING_MODEL's vectors
    # (BM25 without a key). Under it, the knowledge stays whole in the cacheable prefix.
    knowledge_max_tokens: int = 3000
    knowledge_top_k: int = 3
    embedding_model: str = "text-embedding-3-small"
    media_max_bytes: int = 16 * 1024 * 1024
    # Media is fetched only from public addresses or from these exact origins
    # (scheme://host:port), besides each configured provider's own base URL.
    media_trusted_origins: list[str] = []
    # Downloads and transcriptions running at once, across all turns: media work can
    # never take every turn slot (MAX_CONCURRENT_TURNS).
    media_max_concurrency: int = 4

    # --- Z-API --------------------------------------------------------------------
    zapi_base_url: str = "https://api.z-api.io"
    zapi_instance_id: str | None = None
    zapi_instance_token: SecretStr | None = None
    zapi_client_token: SecretStr | None = None
    zapi_webhook_secret: SecretStr | None = None

    zapi_rate_per_s: float = 20.0

    # --- WAHA (self-hosted WhatsApp HTTP API) ---------------------------------------
    waha_url: str | None = None
    waha_api_key: SecretStr | None = None
    waha_session: str = "default"
    waha_webhook_hmac_key: SecretStr | None = None
    waha_webhook_secret: SecretStr | None = None
    waha_rate_per_s: float = 10.0
    # Subscribe to each new lead's chat presence (POST /api/{session}/presence/{chatId}/
    # subscribe): WAHA sends presence.update only for subscribed chats.
    waha_presence_subscribe: bool = True

    # --- Meta: WhatsApp Cloud API and Instagram Direct ------------------------------
    meta_graph_url: str = "https://graph.facebook.com"
    meta_graph_version: str = "v21.0"
    meta_app_secret: SecretStr | None = None
    meta_verify_token: SecretStr | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_access_token: SecretStr | None = None
    whatsapp_reengage_template: str | None = None
    whatsapp_template_language: str = "pt_BR"
    # The WABA the number belongs to: Meta CAPI's business-messaging events carry it
    # beside `ctwa_clid` so the click-to-WhatsApp ad gets the credit.
    whatsapp_business_account_id: str | None = None
    whatsapp_rate_per_s: float = 50.0
    instagram_access_token: SecretStr | None = None
    instagram_account_id: str | None = None
    instagram_rate_per_s: float = 10.0

    # --- Chatwoot: the sales team's cockpit ------------------------------------------
    chatwoot_api_url: str | None = None
    chatwoot_api_token: SecretStr | None = None
    chatwoot_account_id: str | None = None
    chatwoot_inbox_id: str | None = None
    chatwoot_webhook_secret: SecretStr | None = None
    chatwoot_handoff_team_id: int | None = None
    chatwoot_reopen_resolved: bool = False
    # The lead panel inside Chatwoot (a Dashboard App: Settings > Integrations > Dashboard
    # Apps), opened at /chatwoot/panel?token=CHATWOOT_PANEL_TOKEN; unset: the panel is closed.
    chatwoot_panel_token: SecretStr | None = None
    # The address the sales team opens Chatwoot at, when it is not CHATWOOT_API_URL (the
    # bot reaching Chatwoot internally): only its origin may frame the panel and hand it
    # a conversation.
    chatwoot_frontend_url: str | None = None

    # --- Supabase: the production store (unset: embedded SQLite) ------------------
    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    supabase_timeout_s: float = 10.0
    supabase_max_attempts: int = 3
    # Direct Postgres connection (Supabase: Settings > Database), used only by `main.py migrate`.
    database_url: SecretStr | None = None
    # Names this process in turn leases shared by several instances; default: host-pid-random.
    instance_id: str | None = None
    turn_lease_s: float = 120.0
    pending_poll_s: float = 1.0

    # --- PipeRun CRM ----------------------------------------------------------------
    piperun_api_url: str = "https://api.pipe.run/v1"
    piperun_api_token: SecretStr | None = None
    piperun_pipeline_id: int | None = None
    piperun_stage_id: int | None = None
    piperun_origin_id: int | None = None
    # Per-channel origins (WhatsApp vs Instagram ads); fall back to PIPERUN_ORIGIN_ID.
    piperun_origin_id_whatsapp: int | None = None
    piperun_origin_id_instagram: int | None = None
    piperun_owner_id: int | None = None
    # What sends a lead to the CRM: "hot" (quente), "handoff", or both.
    piperun_sync_on: list[Literal["hot", "handoff"]] = ["hot", "handoff"]
    piperun_rate_per_s: float = 5.0
    # What `forget` does to the lead's PipeRun person: delete it, or keep the deal history
    # with the personal fields blanked (name, phones, e-mails).
    piperun_forget: Literal["delete", "anonymize"] = "anonymize"
    # A deal's page in PipeRun, linked from the lead panel in Chatwoot ({deal_id} filled in).
    piperun_deal_url: str = "https://app.pipe.run/pipeline/gerenciador/visualizar/{deal_id}"

    # --- Meta Conversions API -------------------------------------------------------
    meta_pixel_id: str | None = None
    meta_access_token: SecretStr | None = None
    meta_test_event_code: str | None = None
    # Lifecycle events sent to Meta; drop a name to turn it off.
    meta_capi_events: list[Literal["Lead", "QualifiedLead", "Schedule", "Purchase", "lead_lost"]] = [
        "Lead",
        "QualifiedLead",
        "Schedule",
        "Purchase",
        "lead_lost",
    ]
    # The system name Meta's Conversions API for CRM is told form leads are tracked in
    # (`custom_data.lead_event_source`).
    meta_capi_lead_event_source: str = "SDR Agent"
    # Meta's standard name for a qualified lead, or the custom "QualifiedLead".
    meta_capi_qualified_event: Literal["QualifiedLead", "CompleteRegistration"] = "QualifiedLead"

    # --- outbound webhooks (any other CRM or automation) ------------------------------
    # JSON list of {"url", "secret", "events": [...]} or a path to a TOML/JSON file of them.
    outbound_webhooks: str | None = None
    outbound_webhooks_file: Path | None = None
    # Shared secret for POST /webhooks/crm (a CRM reporting won/lost deals and meetings).
    crm_webhook_secret: SecretStr | None = None

    # --- form leads (Meta Lead Ads, website forms, RD Station) ------------------------
    # A Page access token with `leads_retrieval` (and `pages_manage_metadata` to subscribe
    # the Page's `leadgen` field): reads each Lead Ads lead from the Graph API.
    meta_page_access_token: SecretStr | None = None
    # POST /api/leads: `Authorization: Bearer LEADS_API_KEY`, or the body signed with it
    # (`X-Signature-256: sha256=<hex HMAC-SHA256>`).
    leads_api_key: SecretStr | None = None
    # POST /webhooks/rdstation?token=RDSTATION_WEBHOOK_SECRET (RD Station Marketing's
    # conversion webhook carries no signature of its own).
    rdstation_webhook_secret: SecretStr | None = None
    # The WhatsApp provider a form lead's first message goes out on.
    lead_first_touch_channel: Literal["zapi", "waha", "whatsapp_cloud"] = "zapi"
    # WhatsApp Cloud API: the approved template of a first touch (the lead never wrote,
    # so no 24-hour window is open); its variables are in prompts/whatsapp_templates.toml.
    whatsapp_first_touch_template: str | None = None
    # A form older than this (a backlog replay, a webhook retried for hours) is answered
    # in business hours, not at 3 a.m.
    lead_first_touch_max_age_min: float = 60.0

    # --- meetings (issue 17: Google Calendar) ---------------------------------------
    # Off until a company turns it on: the bot then offers the right seller's free times
    # (prompts/sellers.toml, prompts/meetings.toml) and books the one the lead chooses.
    meetings_enabled: bool = False
    google_calendar_api_url: str = "https://www.googleapis.com/calendar/v3"
    google_token_url: str = "https://oauth2.googleapis.com/token"
    # A service account with domain-wide delegation, acting as each seller (its JSON key,
    # or the path of the key file).
    google_service_account_json: SecretStr | None = None
    google_service_account_file: Path | None = None
    # Or each seller's own Google account: the OAuth client that issued the refresh tokens,
    # and the tokens as JSON {"<seller key>": "<refresh token>"}.
    google_oauth_client_id: str | None = None
    google_oauth_client_secret: SecretStr | None = None
    google_seller_refresh_tokens: SecretStr | None = None

    # --- conversation runtime -----------------------------------------------------
    # The quiet window after a fragment ("oi", "então,", a short line without punctuation)...
    debounce_quiet_s: float = 4.0
    debounce_max_s: float = 15.0
    # ...after a message that ends a thought ("...?", "...", a long line, a voice note);
    debounce_complete_s: float = 1.0
    # ...and after one when the lead's phone reports presence (Z-API, WAHA): it would say
    # if they typed on; "typing"/"recording" holds the turn at most this long without news.
    debounce_presence_s: float = 0.8
    debounce_typing_s: float = 10.0
    # Past messages the store hands a turn (the prompt starts them at an anchor and within
    # HISTORY_MAX_TOKENS; the rolling summary carries the older ones).
    history_window: int = 16
    # A lead's message longer than this is cut (the model is told so) before any prompt.
    lead_message_max_chars: int = 4000
    # Tokens of prompt (system + history + this turn) the bot builds at most per call.
    prompt_max_tokens: int = 12000
    # Tokens of history behind the rolling summary a prompt carries at most: each is billed
    # again on every later turn (at the cached price while the prefix holds).
    history_max_tokens: int = 2000
    max_concurrent_turns: int = 32
    turn_max_failures: int = 3
    bot_pause_hours: float = 12.0
    session_idle_hours: float = 24.0
    follow_up_delays_h: list[float] = [2.0, 22.0]
    follow_up_poll_s: float = 30.0
    turn_retry_base_s: float = 5.0
    turn_retry_max_s: float = 300.0

    # --- replies ------------------------------------------------------------------
    reply_max_parts: int = 3
    typing_chars_per_s: float = 30.0
    typing_max_s: int = 8

    # --- outbox dispatcher --------------------------------------------------------
    outbox_workers: int = 8
    outbox_poll_s: float = 1.0
    # Unset: each integration's row of the policy table (runtime/policies.py) decides.
    # Set: applies to every integration (how tests shrink the clocks).
    outbox_max_attempts: int | None = None
    outbox_backoff_base_s: float | None = None
    outbox_backoff_max_s: float | None = None
    http_timeout_s: float = 15.0
    # Seconds an open circuit waits before letting one probe through; unset: the table's
    # per-integration value (30-60 s).
    circuit_reset_s: float | None = None
    shutdown_grace_s: float = 10.0
    # /api/health's authenticated checks of OpenAI, PipeRun and Meta CAPI credentials are
    # kept this long: a probe every minute at most, however often the health is polled.
    health_probe_ttl_s: float = 60.0

    @field_validator(
        "openai_api_key",
        "zapi_instance_token",
        "zapi_client_token",
        "zapi_webhook_secret",
        "waha_api_key",
        "waha_webhook_hmac_key",
        "waha_webhook_secret",
        "meta_app_secret",
        "meta_verify_token",
        "whatsapp_access_token",
        "instagram_access_token",
        "chatwoot_api_token",
        "chatwoot_webhook_secret",
        "chatwoot_panel_token",
        "chatwoot_frontend_url",
        "dashboard_token",
        "supabase_service_role_key",
        "piperun_api_token",
        "database_url",
        "zapi_instance_id",
        "waha_url",
        "whatsapp_phone_number_id",
        "whatsapp_reengage_template",
        "whatsapp_business_account_id",
        "instagram_account_id",
        "chatwoot_api_url",
        "supabase_url",
        "instance_id",
        "meta_pixel_id",
        "meta_access_token",
        "meta_test_event_code",
        "outbound_webhooks",
        "outbound_webhooks_file",
        "crm_webhook_secret",
        "meta_page_access_token",
        "leads_api_key",
        "rdstation_webhook_secret",
        "whatsapp_first_touch_template",
        "google_service_account_json",
        "google_service_account_file",
        "google_oauth_client_id",
        "google_oauth_client_secret",
        "google_seller_refresh_tokens",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `.env.example` copied as-is leaves `KEY=`; that means "not configured".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator(
        "outbox_max_attempts",
        "outbox_backoff_base_s",
        "outbox_backoff_max_s",
        "circuit_reset_s",
        "chatwoot_handoff_team_id",
        "piperun_pipeline_id",
        "piperun_stage_id",
        "piperun_origin_id",
        "piperun_origin_id_whatsapp",
        "piperun_origin_id_instagram",
        "piperun_owner_id",
        mode="before",
    )
    @classmethod
    def _blank_int_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("sqlite_path", mode="before")
    @classmethod
    def _blank_path_is_default(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return PROJECT_ROOT / "data" / "sdr.sqlite3"
        return value

    # --- derived ------------------------------------------------------------------
    @property
    def openai_configured(self) -> bool:
        return self.openai_api_key is not None

    @property
    def zapi_configured(self) -> bool:
        return bool(self.zapi_instance_id and self.zapi_instance_token)

    @property
    def waha_configured(self) -> bool:
        return bool(self.waha_url)

    @property
    def whatsapp_cloud_configured(self) -> bool:
        return bool(self.whatsapp_phone_number_id and self.whatsapp_access_token)

    @property
    def instagram_configured(self) -> bool:
        return bool(self.instagram_account_id and self.instagram_access_token)

    @property
    def chatwoot_configured(self) -> bool:
        return bool(self.chatwoot_api_url and self.chatwoot_api_token and self.chatwoot_account_id)

    @property
    def supabase_configured(self) -> bool:
        return bool(self.supabase_url and self.supabase_service_role_key)

    @property
    def piperun_configured(self) -> bool:
        return bool(self.piperun_api_token and self.piperun_pipeline_id and self.piperun_stage_id)

    @property
    def meta_capi_configured(self) -> bool:
        return bool(self.meta_pixel_id and self.meta_access_token)

    def piperun_origin_for(self, channel: str) -> int | None:
        if channel == "instagram" and self.piperun_origin_id_instagram:
            return self.piperun_origin_id_instagram
        if channel != "instagram" and self.piperun_origin_id_whatsapp:
            return self.piperun_origin_id_whatsapp
        return self.piperun_origin_id

    def secret_values(self) -> list[str]:
        """Every configured secret, so the log scrubber can redact them verbatim."""
        out: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                if len(raw) >= 4:
                    out.append(raw)
        return out


__all__ = ["Settings"]
