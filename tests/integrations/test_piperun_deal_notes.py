"""A quote request or a technical question lands on the lead's deal as one note.

[adicionar-nota] POST /notes {text, deal_id} and [listar-notas] GET /notes?deal_id=
(PipeRun API v1 reference; fixtures note_create_response.json / notes_list.json). The
account is test_piperun_contract's SpecPipeRun: every call is held to the reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr

from integrations.piperun import (
    CrmLink,
    LeadCard,
    PipeRunClient,
    PipeRunConfig,
    PipeRunError,
    external_code_for,
    is_card_note,
    post_deal_note,
    render_deal_note,
    sync_lead,
)
from runtime.erasure import _OUR_NOTE
from tests.helpers.fake_piperun import BASE
from tests.integrations.test_piperun_contract import SpecPipeRun

TOKEN = "pr-tok-deal-notes-77a1"
KEY = "whatsapp:5511987654321"
REF = external_code_for(KEY)
QUOTE = "Pedido de orçamento:\nSecador rotativo <200 sacas/dia>\n\nEntrega & montagem em Franca"


@pytest.fixture
async def client() -> AsyncIterator[PipeRunClient]:
    async with aiohttp.ClientSession() as session:
        yield PipeRunClient(PipeRunConfig(api_url=BASE, token=SecretStr(TOKEN), timeout_s=5), session)


@pytest.fixture
def fake() -> Iterator[SpecPipeRun]:
    with aioresponses() as mocked:
        account = SpecPipeRun(mocked, token=TOKEN)
        yield account
        assert account.violations == []


async def test_the_note_is_escaped_html_on_the_deal(client: PipeRunClient, fake: SpecPipeRun) -> None:
    await post_deal_note(client, 501, QUOTE, reference=REF, key="quote:turn-1")

    [note] = fake.posts("/notes")
    assert note["deal_id"] == 501
    assert note["text"].startswith(
        "Pedido de orçamento:<br>Secador rotativo &lt;200 sacas/dia&gt;<br><br>Entrega &amp; montagem em Franca"
    )
    assert note["text"].endswith(f"<br><br>Ref. SDR: {REF}/" + note["text"].rsplit("/", 1)[1])
    assert "quote:turn-1" not in note["text"]


async def test_a_retry_after_a_lost_answer_posts_nothing_twice(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    fake.notes.append({"id": 7, "deal_id": 501, "text": "Cliente pediu retorno à tarde."})
    fake.fail_next("POST", "/notes", exception=TimeoutError())  # lost before PipeRun saw it
    with pytest.raises(PipeRunError) as lost:
        await post_deal_note(client, 501, QUOTE, reference=REF, key="quote:turn-1")
    assert lost.value.retryable

    first = await post_deal_note(client, 501, QUOTE, reference=REF, key="quote:turn-1")
    again = await post_deal_note(client, 501, QUOTE, reference=REF, key="quote:turn-1")  # answer lost
    other = await post_deal_note(client, 501, "Dúvida técnica: voltagem?", reference=REF, key="tech:turn-2")

    assert first == again != other
    assert [n["id"] for n in fake.notes] == [7, first, other]


async def test_the_card_sync_never_takes_a_deal_note_for_its_own(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    card = LeadCard(contact_key=KEY, channel="zapi", verified_phone="5511987654321", temperature="quente")

    async def progress(link: CrmLink) -> None:
        return None

    link = await sync_lead(client, card, CrmLink(), pipeline_id=1, stage_id=2, on_progress=progress)
    assert link.deal_id is not None
    quote_id = await post_deal_note(client, link.deal_id, QUOTE, reference=REF, key="quote:turn-1")
    # The card note's id was lost: the sync looks for it among the deal's notes.
    await sync_lead(
        client,
        card,
        link.model_copy(update={"note_id": None}),
        pipeline_id=1,
        stage_id=2,
        on_progress=progress,
    )

    quote = next(n for n in fake.notes if n["id"] == quote_id)
    assert quote["text"].startswith("Pedido de orçamento")
    assert [p for p, _ in fake.puts("/notes")] == [f"/notes/{link.note_id}"]


def test_the_erasure_finds_deal_notes_like_the_card() -> None:
    text = render_deal_note(QUOTE, marker=f"{REF}/0123456789ab")
    assert _OUR_NOTE.search(text) is not None
    assert not is_card_note(text, REF)
    assert is_card_note(f"Lead quente<br><br>Ref. SDR: {REF}", REF)
    assert is_card_note(f"Ref. SDR: {REF}<br>", REF)


@pytest.mark.parametrize("status", [429, 503])
async def test_a_busy_piperun_is_retried_by_the_outbox(
    client: PipeRunClient, fake: SpecPipeRun, status: int
) -> None:
    fake.fail_next(
        "POST", "/notes", status=status, payload={"success": False, "message": "Too Many Attempts."}
    )
    with pytest.raises(PipeRunError) as caught:
        await post_deal_note(client, 501, QUOTE, reference=REF, key="k")
    assert caught.value.retryable and caught.value.status == status
