"""`python main.py doctor`: does every configured integration really work with what was pasted?

An operator sets the bot up by copying ids and tokens out of half a dozen dashboards. A
wrong one stays silent until the first lead writes and nothing happens, or the CRM never
gets the deal. The doctor makes one harmless, read-only call per configured integration,
at the same time and with a short deadline, and says in plain pt-BR what is wrong and
what to do; then it prints the webhook URLs to paste into each provider.

Adding a provider is one `Check` in `CHECKS`: a name, the env vars that turn it on, the
`*_configured` predicate of `Settings`, and a probe returning a `CheckResult`.

Nothing printed can carry a secret: every line goes through the same verbatim redaction
of configured secrets as the logs, provider error texts are cut short and pass the log
scrubber, and transport failures are reported by kind and host only (their text can
carry a URL with the Z-API instance token in it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp
from yarl import URL

from channels.provider_http import error_detail, scrub
from channels.registry import build_channels
from core.logging import Scrubber
from core.models import mask_phone
from core.settings import Settings

DEFAULT_TIMEOUT_S = 10.0
# Provider texts quoted to the operator are cut here: enough for "Instance not found".
_QUOTE_MAX = 120
_LABEL_WIDTH = 10
# "waha:3000" (no scheme) is refused before any connection; older aiohttp lacks the class.
_BAD_URL = (aiohttp.InvalidURL, getattr(aiohttp, "NonHttpUrlClientError", aiohttp.InvalidURL))


@dataclass(frozen=True)
class CheckResult:
    """One verdict: `detail` says what was found, `hint` what the operator should do."""

    ok: bool
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class Check:
    """One integration. `required` are the env vars `configured` depends on (listed when
    missing), `optional` the ones worth mentioning, `url_env` where its address comes from
    (named when the address does not answer)."""

    name: str
    configured: Callable[[Settings], bool]
    probe: Callable[[ProbeContext], Awaitable[CheckResult]]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    url_env: str | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    data: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _Verdict(Exception):
    """A probe's answer reached before it could finish (timeout, unreachable host)."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.detail)
        self.result = result


def ok(detail: str) -> CheckResult:
    return CheckResult(True, detail)


def problem(detail: str, hint: str) -> CheckResult:
    return CheckResult(False, detail, hint)


@dataclass
class ProbeContext:
    """What a probe needs: settings, the shared HTTP session, its deadline and helpers
    that turn transport failures and odd answers into operator words."""

    settings: Settings
    session: aiohttp.ClientSession
    timeout_s: float
    check: Check
    scrubber: Scrubber

    async def get(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        host = _host(url)
        try:
            async with self.session.get(
                url,
                headers=headers,
                params=params,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
        except TimeoutError:  # asyncio.TimeoutError and aiohttp's ServerTimeoutError
            raise _Verdict(self.timed_out()) from None
        except _BAD_URL:
            raise _Verdict(
                problem(
                    "URL inválida",
                    f"confira {self.check.url_env or 'a URL'}: use o endereço completo, com http:// ou https://",
                )
            ) from None
        except aiohttp.ClientConnectorCertificateError:
            raise _Verdict(
                problem(
                    f"certificado HTTPS inválido em {host}",
                    f"confira {self.check.url_env or 'a URL'} e o certificado do servidor",
                )
            ) from None
        except aiohttp.ClientConnectorError:
            raise _Verdict(self.unreachable(host)) from None
        except aiohttp.ClientError as exc:
            # Only the kind: the exception text can carry the URL (and the Z-API token).
            raise _Verdict(
                problem(
                    f"falha de conexão com {host} ({type(exc).__name__})",
                    "rode de novo; se continuar, confira a rede e "
                    f"{self.check.url_env or 'a URL configurada'}",
                )
            ) from None
        try:
            data: Any = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        return Reply(status, text, data)

    def timed_out(self) -> CheckResult:
        return problem(
            f"timeout: sem resposta em {self.timeout_s:g} s",
            "o serviço está lento ou fora do ar; rode de novo em alguns minutos"
            + (f" e confira {self.check.url_env}" if self.check.url_env else ""),
        )

    def unreachable(self, host: str) -> CheckResult:
        where = f"confira {self.check.url_env}, " if self.check.url_env else ""
        return problem(
            f"URL inacessível ({host} não responde)",
            f"{where}se o servidor está no ar e se esta máquina consegue acessá-lo (DNS, firewall)",
        )

    def provider_words(self, reply: Reply, *paths: tuple[str, ...]) -> str:
        """The provider's own words, short and scrubbed (error bodies echo our tokens)."""
        text = error_detail(reply.text, paths or (("error",), ("message",)))
        text = " ".join(str(self.scrubber.scrub(text)).split())
        return text[:_QUOTE_MAX] + ("…" if len(text) > _QUOTE_MAX else "")

    def unexpected(self, reply: Reply, *paths: tuple[str, ...]) -> CheckResult:
        said = self.provider_words(reply, *paths) if not reply.ok else ""
        if reply.status == 429:
            return problem(
                "limite de requisições atingido (HTTP 429)", "espere um minuto e rode o doctor de novo"
            )
        if reply.status >= 500:
            return problem(
                f"o serviço respondeu com erro (HTTP {reply.status}{': ' + said if said else ''})",
                "é do lado do provedor; rode de novo em alguns minutos",
            )
        return problem(
            f"resposta inesperada (HTTP {reply.status}{': ' + said if said else ''})",
            f"confira {self.check.url_env or 'a configuração'}; se estiver certo, rode de novo mais tarde",
        )


def _host(url: str) -> str:
    try:
        return URL(url).host or "?"
    except (TypeError, ValueError):
        return "?"


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def _record(data: Any) -> dict[str, Any] | None:
    """PipeRun wraps a record in `data`, sometimes as a one-item list."""
    inner = data.get("data") if isinstance(data, dict) else None
    if isinstance(inner, list):
        inner = inner[0] if inner else None
    return inner if isinstance(inner, dict) else None


# --- probes -----------------------------------------------------------------------------


async def _probe_openai(ctx: ProbeContext) -> CheckResult:
    s = ctx.settings
    # GET {base}/models lists the models the key may use and changes nothing.
    # https://developers.openai.com/api/reference/resources/models/methods/list
    # (returns {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}).
    reply = await ctx.get(
        f"{s.openai_base_url.rstrip('/')}/models",
        headers={"Authorization": f"Bearer {_secret(s.openai_api_key)}"},
    )
    if reply.status == 401:
        # The 401 body quotes part of the key ("Incorrect API key provided: sk-...").
        return problem(
            "token inválido: a OpenAI recusou a chave",
            "crie uma chave em https://platform.openai.com/api-keys e coloque em OPENAI_API_KEY",
        )
    if reply.status == 403:
        return problem(
            f"a chave não tem permissão ({ctx.provider_words(reply, ('error', 'message'))})",
            "confira as permissões do projeto da chave no painel da OpenAI",
        )
    if reply.status == 429:
        return problem(
            "sem crédito ou acima do limite da conta (HTTP 429)",
            "confira créditos e limites em https://platform.openai.com/settings/organization/billing",
        )
    if reply.status == 404:
        return problem(
            "URL errada: o endereço não tem a lista de modelos",
            "confira OPENAI_BASE_URL (o padrão é https://api.openai.com/v1)",
        )
    models = reply.data.get("data") if isinstance(reply.data, dict) else None
    if not reply.ok or not isinstance(models, list):
        return ctx.unexpected(reply, ("error", "message"))
    ids = {m.get("id") for m in models if isinstance(m, dict)}
    if ids and s.openai_model not in ids:
        return problem(
            f"chave aceita, mas o modelo {s.openai_model} não está liberado para ela",
            "troque OPENAI_MODEL por um modelo da sua conta (ex.: gpt-4o) ou libere-o no projeto da chave",
        )
    return ok(f"chave aceita; modelo {s.openai_model} disponível")


async def _probe_zapi(ctx: ProbeContext) -> CheckResult:
    s = ctx.settings
    # Instance status: GET /instances/{id}/token/{token}/status with the account's
    # Client-Token header; 200 {"connected": bool, "error": str, "smartphoneConnected": bool}.
    # https://developer.z-api.io/en/instance/status
    url = (
        f"{s.zapi_base_url.rstrip('/')}/instances/{s.zapi_instance_id}"
        f"/token/{_secret(s.zapi_instance_token)}/status"
    )
    headers = {"Accept": "application/json"}
    if s.zapi_client_token is not None:
        headers["Client-Token"] = _secret(s.zapi_client_token)
    reply = await ctx.get(url, headers=headers)
    text = reply.text.lower()
    if "client-token" in text or "null not allowed" in text or reply.status in (401, 403):
        # https://developer.z-api.io/en/security/client-token: every request of an account
        # with the security token on must carry it; the 403 body echoes the token sent.
        return problem(
            "token inválido: a Z-API recusou o Client-Token",
            "copie o token de segurança da conta (painel Z-API → Segurança) para ZAPI_CLIENT_TOKEN",
        )
    if reply.status == 404 or ("instance" in text and "not found" in text):
        return problem(
            "ID ou token da instância errado: a Z-API não encontrou a instância",
            "copie o ID e o token da instância (painel Z-API → Instâncias) para "
            "ZAPI_INSTANCE_ID e ZAPI_INSTANCE_TOKEN",
        )
    data = reply.data if isinstance(reply.data, dict) else {}
    if not reply.ok or not isinstance(data.get("connected"), bool):
        return ctx.unexpected(reply, ("error",), ("message",))
    if not data["connected"]:
        said = ctx.provider_words(reply, ("error",))
        return problem(
            "instância encontrada, mas o WhatsApp está desconectado" + (f" ({said})" if said else ""),
            "no painel da Z-API abra a instância e leia o QR code com o WhatsApp do celular da empresa",
        )
    if data.get("smartphoneConnected") is False:
        return ok("WhatsApp conectado (atenção: o celular está sem internet agora)")
    return ok("WhatsApp conectado")


_WAHA_HINTS = {
    "SCAN_QR_CODE": "abra o painel do WAHA (/dashboard) e leia o QR code com o WhatsApp do celular da empresa",
    "STARTING": "a sessão está iniciando; espere um minuto e rode o doctor de novo",
    "STOPPED": "inicie a sessão no painel do WAHA (Start)",
    "FAILED": "reinicie a sessão no painel do WAHA (Restart); se não voltar, faça logout e leia o QR code de novo",
}


async def _probe_waha(ctx: ProbeContext) -> CheckResult:
    s = ctx.settings
    name = s.waha_session
    # Get session: GET /api/sessions/{name} -> {"name", "status": STOPPED|STARTING|
    # SCAN_QR_CODE|WORKING|FAILED, "me": {"id", "pushName"}, ...}; auth header X-Api-Key.
    # https://waha.devlike.pro/docs/how-to/sessions
    headers = {"Accept": "application/json"}
    if s.waha_api_key is not None:
        headers["X-Api-Key"] = _secret(s.waha_api_key)
    reply = await ctx.get(
        f"{(s.waha_url or '').rstrip('/')}/api/sessions/{quote(name, safe='')}", headers=headers
    )
    if reply.status in (401, 403):
        return problem(
            "token inválido: o WAHA recusou a chave de API",
            "coloque em WAHA_API_KEY a mesma chave configurada no servidor WAHA",
        )
    if reply.status == 404:
        return problem(
            f"a sessão '{name}' não existe neste WAHA",
            "crie a sessão no painel do WAHA ou ponha o nome certo em WAHA_SESSION",
        )
    data = reply.data if isinstance(reply.data, dict) else {}
    status = data.get("status")
    if not reply.ok or not isinstance(status, str):
        return ctx.unexpected(reply, ("message",), ("error",))
    status = status.upper()
    if status == "WORKING":
        me = data.get("me") if isinstance(data.get("me"), dict) else {}
        number = str(me.get("id") or "").split("@")[0]
        return ok(f"sessão '{name}' WORKING" + (f", número {mask_phone(number)}" if number else ""))
    return problem(
        f"a sessão '{name}' não está pronta ({status})",
        _WAHA_HINTS.get(status, "confira a sessão no painel do WAHA"),
    )


def _graph_url(s: Settings, node: str) -> str:
    return f"{s.meta_graph_url.rstrip('/')}/{s.meta_graph_version.strip('/')}/{node}"


def _graph_problem(
    ctx: ProbeContext, reply: Reply, *, id_label: str, id_env: str, token_env: str, permission: str
) -> CheckResult:
    """Graph errors are `{"error": {message, type, code, error_subcode, fbtrace_id}}`; the
    code says who is at fault. https://developers.facebook.com/docs/graph-api/guides/error-handling"""
    error = reply.data.get("error") if isinstance(reply.data, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = error.get("code"), error.get("error_subcode")
    if code == 190 or reply.status == 401:
        return problem(
            "token inválido: a Meta diz que o token expirou ou foi revogado",
            f"gere um token de usuário do sistema (sem validade) no Business Manager e coloque em {token_env}",
        )
    if (code == 100 and subcode == 33) or code == 803:
        # "Unsupported get request. Object with ID '…' does not exist, cannot be loaded
        # due to missing permissions, or does not support this operation" (400).
        return problem(
            f"{id_label} errado, ou o token não tem acesso a ele",
            f"confira {id_env} e se o token de {token_env} foi gerado com acesso a esse ativo",
        )
    if code == 10 or (isinstance(code, int) and 200 <= code <= 299):
        return problem(
            "token sem permissão para ler este ativo",
            f"dê ao token de {token_env} a permissão {permission}",
        )
    if code in (4, 17, 32, 613):
        return problem("limite de chamadas da Meta atingido", "espere alguns minutos e rode o doctor de novo")
    return ctx.unexpected(reply, ("error", "message"))


async def _probe_whatsapp_cloud(ctx: ProbeContext) -> CheckResult:
    s = ctx.settings
    # GET /{version}/{phone-number-id}?fields=display_phone_number,verified_name (bearer):
    # the WhatsApp Business phone number node, read-only.
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/reference/whatsapp-business-phone-number/whatsapp-business-account-phone-number-api
    reply = await ctx.get(
        _graph_url(s, s.whatsapp_phone_number_id or ""),
        params={"fields": "display_phone_number,verified_name"},
        headers={"Authorization": f"Bearer {_secret(s.whatsapp_access_token)}"},
    )
    data = reply.data if isinstance(reply.data, dict) else {}
    if not reply.ok:
        return _graph_problem(
            ctx,
            reply,
            id_label="ID do número (phone number id)",
            id_env="WHATSAPP_PHONE_NUMBER_ID",
            token_env="WHATSAPP_ACCESS_TOKEN",
            permission="whatsapp_business_messaging (e whatsapp_business_management)",
        )
    if "display_phone_number" not in data and "verified_name" not in data:
        return ctx.unexpected(reply)
    number = mask_phone(str(data.get("display_phone_number") or ""))
    name = data.get("verified_name")
    return ok(f"número {number}" + (f", nome verificado '{name}'" if name else ""))


async def _probe_instagram(ctx: ProbeContext) -> CheckResult:
    s = ctx.settings
    # GET /{version}/{ig-user-id}?fields=username (bearer): the IG User node, read-only.
    # https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user
    reply = await ctx.get(
        _graph_url(s, s.instagram_account_id or ""),
        params={"fields": "username"},
        headers={"Authorization": f"Bearer {_secret(s.instagram_access_token)}"},
    )
    data = reply.data if isinstance(reply.data, dict) else {}
    if not reply.ok:
        return _graph_problem(
            ctx,
            reply,
            id_label="ID da conta do Instagram",
            id_env="INSTAGRAM_ACCOUNT_ID",
            token_env="INSTAGRAM_ACCESS_TOKEN",
            permission="instagram_manage_messages (ou instagram_business_manage_messages)",
        )
    if not data.get("username"):
        return ctx.unexpected(reply)
    return ok(f"conta @{data['username']}")


async def _probe_meta_capi(ctx: ProbeContext) -> CheckResult:
    s = ctx.settings
    # GET /{version}/{ads-pixel-id}?fields=name (bearer): the Ads Pixel (dataset) node, read-only.
    # https://developers.facebook.com/docs/marketing-api/reference/ads-pixel/
    reply = await ctx.get(
        _graph_url(s, s.meta_pixel_id or ""),
        params={"fields": "name"},
        headers={"Authorization": f"Bearer {_secret(s.meta_access_token)}"},
    )
    data = reply.data if isinstance(reply.data, dict) else {}
    if not reply.ok:
        return _graph_problem(
            ctx,
            reply,
            id_label="ID do pixel (conjunto de dados)",
            id_env="META_PIXEL_ID",
            token_env="META_ACCESS_TOKEN",
            permission="ads_management (ou acesso ao pixel no Business Manager)",
        )
    if "name" not in data and "id" not in data:
        return ctx.unexpected(reply)
    return ok(f"pixel '{data.get('name') or data.get('id')}'")


def _chatwoot_account_url(s: Settings) -> str:
    base = (s.chatwoot_api_url or "").rstrip("/")
    if base.endswith("/api/v1"):  # accepted with or without the suffix, as the client does
        base = base[: -len("/api/v1")]
    return f"{base}/api/v1/accounts/{s.chatwoot_account_id}"


def _inbox_list(data: Any) -> list[dict[str, Any]]:
    payload = data.get("payload") if isinstance(data, dict) else data
    return [i for i in payload if isinstance(i, dict)] if isinstance(payload, list) else []


def _api_inboxes(inboxes: list[dict[str, Any]]) -> str:
    names = [f"{i.get('id')} ({i.get('name')})" for i in inboxes if i.get("channel_type") == "Channel::Api"]
    return ", ".join(names) if names else "nenhuma; crie uma em Configurações → Caixas de entrada → API"


async def _probe_chatwoot(ctx: ProbeContext) -> CheckResult:
    s = ctx.settings
    account = s.chatwoot_account_id
    # GET /api/v1/accounts/{account_id}/inboxes/{id} ("Get an inbox") or .../inboxes
    # ("List all inboxes", {"payload": [...]}) with the api_access_token header.
    # https://developers.chatwoot.com/api-reference/inboxes/get-an-inbox.md and
    # https://developers.chatwoot.com/api-reference/inboxes
    # An unknown account is a 404, an account the token's user is not in a 401 "You are
    # not authorized to access this account", a bad token a 401 "Invalid Access Token"
    # (chatwoot app/controllers/concerns/ensure_current_account_helper.rb,
    # access_token_auth_helper.rb).
    base = _chatwoot_account_url(s)
    headers = {"api_access_token": _secret(s.chatwoot_api_token), "Accept": "application/json"}
    inbox = (s.chatwoot_inbox_id or "").strip()
    if inbox and not inbox.isdigit():
        return problem(
            "CHATWOOT_INBOX_ID não é um número",
            "use o número da caixa de entrada do tipo API (aparece na URL dela no Chatwoot)",
        )
    reply = await ctx.get(f"{base}/inboxes/{inbox}" if inbox else f"{base}/inboxes", headers=headers)
    wrong_account = problem(
        f"ID da conta errado: a conta {account} não existe neste Chatwoot",
        "confira CHATWOOT_ACCOUNT_ID (o número depois de /app/accounts/ na URL do Chatwoot)",
    )
    if reply.status == 401:
        said = reply.text.lower()
        if "not authorized to access this account" in said:
            return problem(
                f"ID da conta errado: o usuário do token não faz parte da conta {account}",
                "confira CHATWOOT_ACCOUNT_ID (o número depois de /app/accounts/ na URL) e se o "
                "token é de um usuário dessa conta",
            )
        if "suspended" in said:
            return problem(f"a conta {account} está suspensa no Chatwoot", "reative a conta no Chatwoot")
        return problem(
            "token inválido: o Chatwoot recusou o token de acesso",
            "copie o token de acesso (Perfil → Token de acesso) para CHATWOOT_API_TOKEN",
        )
    if reply.status == 404 and not isinstance(reply.data, dict):
        return problem(
            "URL errada: o endereço não respondeu como um Chatwoot",
            "confira CHATWOOT_API_URL (ex.: https://app.chatwoot.com)",
        )
    if reply.status == 404 and not inbox:
        return wrong_account
    if reply.status == 404:
        # Account or inbox? The list answers only if the account exists.
        listing = await ctx.get(f"{base}/inboxes", headers=headers)
        if listing.status == 404:
            return wrong_account
        if listing.ok:
            return problem(
                f"ID da caixa de entrada errado: a caixa {inbox} não existe na conta {account}",
                f"ponha em CHATWOOT_INBOX_ID uma caixa do tipo API desta conta: {_api_inboxes(_inbox_list(listing.data))}",
            )
        return ctx.unexpected(listing, ("error",), ("message",))
    if not reply.ok or not isinstance(reply.data, dict):
        return ctx.unexpected(reply, ("error",), ("message",))
    if not inbox:
        inboxes = _inbox_list(reply.data)
        return problem(
            f"conta {account} acessível, mas falta CHATWOOT_INBOX_ID (o bot cria os contatos nela)",
            f"ponha em CHATWOOT_INBOX_ID o ID de uma caixa do tipo API: {_api_inboxes(inboxes)}",
        )
    name, kind = reply.data.get("name"), reply.data.get("channel_type")
    if kind and kind != "Channel::Api":
        return problem(
            f"a caixa {inbox} ('{name}') é do tipo {kind}, não API",
            "crie uma caixa do tipo API (Configurações → Caixas de entrada → API) e use o ID dela em CHATWOOT_INBOX_ID",
        )
    return ok(f"conta {account}, caixa '{name}' ({inbox}, API)")


async def _probe_piperun(ctx: ProbeContext) -> CheckResult:
    s = ctx.settings
    base = s.piperun_api_url.rstrip("/")
    headers = {"token": _secret(s.piperun_api_token), "Accept": "application/json"}
    # PipeRun API v1 (https://developers.pipe.run/reference, OpenAPI export in
    # github.com/LesserWords/n8n-nodes-piperun-openapi schemas/latest.Piperun.openapi.json):
    # [ver-detalhes-do-funil] GET /pipelines/{id} and [ver-detalhes-da-etapa-de-funil]
    # GET /stages/{stage_id}, auth header `token`; `data` is the record (a one-item list in
    # the examples), the stage carries its `pipeline_id`; 404 {"success": false, "message": "Not Found"}.
    answers = await asyncio.gather(
        ctx.get(f"{base}/pipelines/{s.piperun_pipeline_id}", headers=headers),
        ctx.get(f"{base}/stages/{s.piperun_stage_id}", headers=headers),
        return_exceptions=True,
    )
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    pipeline_reply, stage_reply = answers
    assert isinstance(pipeline_reply, Reply) and isinstance(stage_reply, Reply)
    if 401 in (pipeline_reply.status, stage_reply.status):
        return problem(
            "token inválido: o PipeRun recusou o token da API",
            "copie o token da API (PipeRun → Meu perfil → Token) para PIPERUN_API_TOKEN",
        )
    if 403 in (pipeline_reply.status, stage_reply.status):
        return problem(
            "o usuário do token não pode ver este funil ou etapa",
            "dê ao usuário do token acesso ao funil no PipeRun, ou use o token de outro usuário",
        )
    wrong: list[str] = []
    if pipeline_reply.status == 404:
        wrong.append(f"ID do funil errado ({s.piperun_pipeline_id} não existe)")
    if stage_reply.status == 404:
        wrong.append(f"ID da etapa errado ({s.piperun_stage_id} não existe)")
    if wrong:
        return problem(
            "; ".join(wrong),
            "confira PIPERUN_PIPELINE_ID e PIPERUN_STAGE_ID (PipeRun → Configurações → Funis)",
        )
    pipeline, stage = _record(pipeline_reply.data), _record(stage_reply.data)
    if not pipeline_reply.ok or pipeline is None:
        return ctx.unexpected(pipeline_reply, ("message",))
    if not stage_reply.ok or stage is None:
        return ctx.unexpected(stage_reply, ("message",))
    pname, sname = pipeline.get("name") or "?", stage.get("name") or "?"
    owner = stage.get("pipeline_id")
    if owner is not None and str(owner) != str(s.piperun_pipeline_id):
        return problem(
            f"a etapa {s.piperun_stage_id} ('{sname}') é do funil {owner}, "
            f"não do funil {s.piperun_pipeline_id} ('{pname}')",
            f"use em PIPERUN_STAGE_ID uma etapa do funil {s.piperun_pipeline_id}, ou corrija PIPERUN_PIPELINE_ID",
        )
    return ok(f"funil '{pname}' ({s.piperun_pipeline_id}), etapa '{sname}' ({s.piperun_stage_id})")


# PostgREST codes for "that table or function is not there": the schema was never applied.
_MISSING_SCHEMA = {"PGRST205", "PGRST202", "42P01", "42883"}


async def _probe_supabase(ctx: ProbeContext) -> CheckResult:
    s = ctx.settings
    try:  # optional backend: its dependencies need not be installed for SQLite setups
        from core.errors import StoreUnavailable
        from store.supabase import SupabaseRequestError, SupabaseStore
    except ImportError as exc:
        if exc.name and exc.name.startswith("store"):
            return problem(
                "esta versão do bot não tem o módulo do Supabase",
                "atualize o bot; enquanto isso, deixe SUPABASE_URL vazio para usar o SQLite embutido",
            )
        return problem(
            f"falta a biblioteca '{exc.name}' usada pelo Supabase",
            "instale as dependências do bot de novo: pip install -e .",
        )
    # The store's own read: `ping` selects one row of `inbound` through PostgREST.
    store = SupabaseStore(
        s.supabase_url or "", _secret(s.supabase_service_role_key), timeout_s=ctx.timeout_s, max_attempts=1
    )
    try:
        await store.open()
        await store.ping()
    except StoreUnavailable as exc:
        said = str(exc).lower()
        if "key was refused" in said:
            return problem(
                "token inválido: o Supabase recusou a chave service_role",
                "copie a chave service_role (Supabase → Project Settings → API) para SUPABASE_SERVICE_ROLE_KEY",
            )
        if "timeout" in said or "no answer" in said:
            return ctx.timed_out()
        if "connection error" in said:
            return ctx.unreachable(_host(s.supabase_url or ""))
        return problem(
            f"o Supabase não respondeu direito ({ctx.scrubber.scrub(str(exc))[:_QUOTE_MAX]})",
            "veja o status do projeto no painel do Supabase e rode de novo",
        )
    except SupabaseRequestError as exc:
        if exc.status == 404 or exc.code in _MISSING_SCHEMA:
            return problem(
                "o banco do Supabase ainda não tem as tabelas do bot",
                "aplique o schema: defina DATABASE_URL e rode python main.py migrate --apply",
            )
        return problem(
            f"o Supabase recusou a leitura (HTTP {exc.status}{' ' + exc.code if exc.code else ''})",
            "aplique o schema mais recente: python main.py migrate --apply",
        )
    except Exception as exc:  # client construction: bad URL or key format
        return problem(
            f"não deu para abrir o cliente do Supabase ({type(exc).__name__})",
            "confira SUPABASE_URL (https://<projeto>.supabase.co) e SUPABASE_SERVICE_ROLE_KEY",
        )
    finally:
        await store.close()
    return ok("banco acessível com a chave service_role; tabelas do bot presentes")


CHECKS: tuple[Check, ...] = (
    Check(
        "OpenAI",
        lambda s: s.openai_configured,
        _probe_openai,
        ("OPENAI_API_KEY",),
        ("OPENAI_MODEL",),
        "OPENAI_BASE_URL",
    ),
    Check(
        "Z-API",
        lambda s: s.zapi_configured,
        _probe_zapi,
        ("ZAPI_INSTANCE_ID", "ZAPI_INSTANCE_TOKEN"),
        ("ZAPI_CLIENT_TOKEN",),
        "ZAPI_BASE_URL",
    ),
    Check(
        "WAHA",
        lambda s: s.waha_configured,
        _probe_waha,
        ("WAHA_URL",),
        ("WAHA_API_KEY", "WAHA_SESSION"),
        "WAHA_URL",
    ),
    Check(
        "WhatsApp Cloud",
        lambda s: s.whatsapp_cloud_configured,
        _probe_whatsapp_cloud,
        ("WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_ACCESS_TOKEN"),
        url_env="META_GRAPH_URL",
    ),
    Check(
        "Instagram",
        lambda s: s.instagram_configured,
        _probe_instagram,
        ("INSTAGRAM_ACCOUNT_ID", "INSTAGRAM_ACCESS_TOKEN"),
        url_env="META_GRAPH_URL",
    ),
    Check(
        "Chatwoot",
        lambda s: s.chatwoot_configured,
        _probe_chatwoot,
        ("CHATWOOT_API_URL", "CHATWOOT_API_TOKEN", "CHATWOOT_ACCOUNT_ID"),
        ("CHATWOOT_INBOX_ID",),
        "CHATWOOT_API_URL",
    ),
    Check(
        "Supabase",
        lambda s: s.supabase_configured,
        _probe_supabase,
        ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"),
        url_env="SUPABASE_URL",
    ),
    Check(
        "PipeRun",
        lambda s: s.piperun_configured,
        _probe_piperun,
        ("PIPERUN_API_TOKEN", "PIPERUN_PIPELINE_ID", "PIPERUN_STAGE_ID"),
        url_env="PIPERUN_API_URL",
    ),
    Check(
        "Meta CAPI",
        lambda s: s.meta_capi_configured,
        _probe_meta_capi,
        ("META_PIXEL_ID", "META_ACCESS_TOKEN"),
        url_env="META_GRAPH_URL",
    ),
)


# --- running and printing ---------------------------------------------------------------


# Which check is which channel: the channel itself says whether its webhook can be
# authenticated (the same rule that makes the route refuse), the doctor only words it.
_CHECK_CHANNELS = {
    "Z-API": "zapi",
    "WAHA": "waha",
    "WhatsApp Cloud": "whatsapp_cloud",
    "Instagram": "instagram",
}
# WAHA also takes a URL token when it cannot sign.
_ALTERNATIVES = {"WAHA_WEBHOOK_HMAC_KEY": "WAHA_WEBHOOK_HMAC_KEY ou WAHA_WEBHOOK_SECRET"}


def _webhook_secret_problem(settings: Settings, check: Check) -> CheckResult | None:
    name = _CHECK_CHANNELS.get(check.name)
    missing = build_channels(settings)[name].missing_webhook_secret if name else None
    if not missing:
        return None
    wanted = _ALTERNATIVES.get(missing, missing)
    return problem(
        f"sem {wanted} o webhook recusa tudo: nenhuma mensagem de lead entra",
        f"defina {wanted} (um segredo longo e aleatório) e use-o no endereço do webhook abaixo",
    )


async def _run_check(ctx: ProbeContext) -> CheckResult:
    """Never raises: whatever goes wrong becomes a PROBLEMA line, so one broken provider
    cannot hide the verdicts on the others. A provider that answers but whose webhook has
    no secret is still a problem: the bot would refuse every message it sends."""
    result = await _probe(ctx)
    if result.ok:
        return _webhook_secret_problem(ctx.settings, ctx.check) or result
    return result


async def _probe(ctx: ProbeContext) -> CheckResult:
    try:
        # A probe may make two calls (Chatwoot) or open a client (Supabase): room for that.
        async with asyncio.timeout(ctx.timeout_s * 3):
            return await ctx.check.probe(ctx)
    except _Verdict as verdict:
        return verdict.result
    except TimeoutError:
        return ctx.timed_out()
    except Exception as exc:  # the text may carry a URL with a token: only the kind
        return problem(
            f"erro inesperado ao verificar ({type(exc).__name__})",
            "rode de novo; se continuar, abra um chamado com esta linha",
        )


def _missing(settings: Settings, check: Check) -> list[str]:
    missing = [env for env in check.required if getattr(settings, env.lower(), None) in (None, "")]
    return missing or list(check.required)


def _not_configured_line(settings: Settings, check: Check) -> str:
    line = f"{check.name}: não configurado; para usar, defina {', '.join(_missing(settings, check))}"
    if check.optional:
        line += f" (opcional: {', '.join(check.optional)})"
    return line


def _public_base(settings: Settings) -> tuple[str, str | None]:
    """The base providers must call, and a warning when it cannot work for them."""
    if settings.public_url and settings.public_url.strip():
        base = settings.public_url.strip().rstrip("/")
        if base.lower().startswith("https://"):
            return base, None
        return base, (
            "Atenção: PUBLIC_URL não é HTTPS; Meta e a maioria dos provedores só chamam "
            "endereços https://. Use um domínio com certificado (ex.: atrás de um proxy)."
        )
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "localhost"
    return f"http://{host}:{settings.port}", (
        "Atenção: PUBLIC_URL não está definido, então estes endereços só valem nesta máquina. "
        "Os provedores precisam de uma URL pública HTTPS: defina PUBLIC_URL "
        "(ex.: https://bot.suaempresa.com.br)."
    )


def _webhook_lines(settings: Settings) -> list[str]:
    """Secrets are named, never shown: `<ZAPI_WEBHOOK_SECRET>` means "its value"."""
    base, warning = _public_base(settings)
    s = settings
    rows: list[tuple[str, str, str]] = []
    if s.zapi_webhook_secret is not None:
        rows.append(("Z-API (Ao receber)", f"{base}/webhooks/zapi?token=<ZAPI_WEBHOOK_SECRET>", ""))
    else:
        rows.append(
            (
                "Z-API (Ao receber)",
                f"{base}/webhooks/zapi",
                "sem ZAPI_WEBHOOK_SECRET o bot recusa tudo que chega aqui; defina um segredo "
                "e acrescente ?token=<ZAPI_WEBHOOK_SECRET>",
            )
        )
    if s.waha_webhook_hmac_key is not None:
        rows.append(("WAHA", f"{base}/webhooks/waha", "chave HMAC no WAHA: o valor de WAHA_WEBHOOK_HMAC_KEY"))
    elif s.waha_webhook_secret is not None:
        rows.append(("WAHA", f"{base}/webhooks/waha?token=<WAHA_WEBHOOK_SECRET>", ""))
    else:
        rows.append(
            (
                "WAHA",
                f"{base}/webhooks/waha",
                "defina WAHA_WEBHOOK_HMAC_KEY ou WAHA_WEBHOOK_SECRET: sem eles o WAHA é recusado",
            )
        )
    meta_note = "token de verificação: o valor de META_VERIFY_TOKEN"
    if s.meta_app_secret is None:
        meta_note += "; defina META_APP_SECRET, sem ele a Meta é recusada"
    rows.append(("Meta (WhatsApp Cloud e Instagram)", f"{base}/webhooks/meta", meta_note))
    rows.append(
        (
            "Chatwoot",
            f"{base}/webhooks/chatwoot?token=<CHATWOOT_WEBHOOK_SECRET>",
            ""
            if s.chatwoot_webhook_secret is not None
            else "defina CHATWOOT_WEBHOOK_SECRET: sem ele o Chatwoot é recusado",
        )
    )
    rows.append(
        (
            "CRM (ganho/perdido/reunião)",
            f"{base}/webhooks/crm?token=<CRM_WEBHOOK_SECRET>",
            "ou o cabeçalho X-Webhook-Secret"
            + (
                ""
                if s.crm_webhook_secret is not None
                else "; defina CRM_WEBHOOK_SECRET: sem ele tudo é recusado"
            ),
        )
    )
    rows.append(("Saúde (monitoramento)", f"{base}/api/health", ""))
    rows.append(("Métricas (Prometheus)", f"{base}/metrics", ""))
    width = max(len(label) for label, _, _ in rows) + 2
    lines = ["", "Endereços para colar em cada provedor:"]
    if warning:
        lines.append(warning)
    for label, url, note in rows:
        lines.append(f"  {label + ':':<{width}}{url}" + (f"  ({note})" if note else ""))
    return lines


async def run_doctor(
    settings: Settings,
    session: aiohttp.ClientSession,
    out: TextIO,
    *,
    checks: Sequence[Check] = CHECKS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Check every configured integration at once and print one line each, then the
    webhook URLs. Returns 0 when everything configured answered as expected, else 1."""
    secrets = settings.secret_values()
    scrubber = Scrubber(secrets)

    def emit(line: str = "") -> None:
        out.write(scrub(line, secrets) + "\n")

    active = [c for c in checks if c.configured(settings)]
    emit(
        f"Verificando {len(active)} integração(ões) configurada(s), "
        f"cada uma com uma chamada só de leitura (limite {timeout_s:g} s)…"
    )
    emit()
    results = await asyncio.gather(
        *(_run_check(ProbeContext(settings, session, timeout_s, c, scrubber)) for c in active)
    )
    verdicts = dict(zip((c.name for c in active), results, strict=True))
    failed: list[str] = []
    for check in checks:
        result = verdicts.get(check.name)
        if result is None:
            emit(f"{'--':<{_LABEL_WIDTH}}{_not_configured_line(settings, check)}")
        elif result.ok:
            emit(f"{'OK':<{_LABEL_WIDTH}}{check.name}: {result.detail}")
        else:
            failed.append(check.name)
            what_to_do = f". O que fazer: {result.hint}" if result.hint else ""
            emit(f"{'PROBLEMA':<{_LABEL_WIDTH}}{check.name}: {result.detail}{what_to_do}")
    emit()
    if failed:
        emit(f"{len(failed)} problema(s): {', '.join(failed)}. Corrija e rode python main.py doctor de novo.")
    elif active:
        emit("Tudo certo com as integrações configuradas.")
    else:
        emit("Nenhuma integração configurada ainda: preencha o .env (veja .env.example).")
    for line in _webhook_lines(settings):
        emit(line)
    return 1 if failed else 0


__all__ = ["CHECKS", "Check", "CheckResult", "ProbeContext", "Reply", "run_doctor"]
