"""Instagram Direct: what issue 15 added, checked against Meta's published examples
(tests/fixtures/instagram/*, `_source` names the page): a seller's file sent as an
attachment by URL, long texts cut to what the Send API accepts, and a lead coming back to
the thread from an ad (`messaging_referrals`) kept as a referral event."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from channels.base import OutgoingMedia, ReferralEvent, media_sender
from channels.errors import MediaTooLarge
from channels.instagram import InstagramChannel, OutsideWindow
from channels.instagram.text import TEXT_MAX_BYTES, split_text
from core.errors import ProviderError, WebhookRejected
from core.models import AdReferral
from tests.channels.test_instagram import (
    IGSID,
    SEND_URL,
    TOKEN,
    RecordingSleep,
    _posts,
    body_of,
    event_of,
    load,
    make_config,
    mid,
)

REQUESTS = body_of("send_attachment_requests.json")


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def channel(sleep: RecordingSleep) -> InstagramChannel:
    return InstagramChannel(make_config(), sleep=sleep)


def media_for(kind: str, caption: str | None = None) -> OutgoingMedia:
    url = REQUESTS[kind]["message"]["attachment"]["payload"]["url"]
    mime = {"image": "image/jpeg", "video": "video/mp4", "audio": "audio/mp4", "document": "application/pdf"}
    return OutgoingMedia(
        kind=kind,  # type: ignore[arg-type]
        data=b"bytes",
        mime=mime[kind],
        file_name=url.rsplit("/", 1)[-1],
        caption=caption,
        url=url,
    )


def sent_ok(n: int) -> dict[str, Any]:
    return {"recipient_id": IGSID, "message_id": mid(n)}


def test_send_media_is_a_capability(channel: InstagramChannel) -> None:
    assert media_sender(channel) is channel


# --- send_media --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document"])
async def test_send_media_posts_the_documented_attachment(channel: InstagramChannel, kind: str) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=body_of("send_text_response.json"))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_media(session, IGSID, media_for(kind))
        [call] = _posts(mocked)
    assert call.kwargs["json"] == REQUESTS[kind]
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert sent.provider_message_id == mid(700)


async def test_a_caption_follows_the_file_as_a_text(channel: InstagramChannel, sleep: RecordingSleep) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=sent_ok(801))
        mocked.post(SEND_URL, payload=sent_ok(802))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_media(
                session, IGSID, media_for("document", caption="  Segue a proposta  ")
            )
        file, caption = (call.kwargs["json"] for call in _posts(mocked))
    assert file == REQUESTS["document"]
    assert caption == {"recipient": {"id": IGSID}, "message": {"text": "Segue a proposta"}}
    assert sent.provider_message_id == mid(801)  # the file is what the person sent
    assert sleep.calls == []  # a caption is no reason to show "typing..."


async def test_human_agent_tags_the_file_and_its_caption(channel: InstagramChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=sent_ok(801))
        mocked.post(SEND_URL, payload=sent_ok(802))
        async with aiohttp.ClientSession() as session:
            await channel.send_media(session, IGSID, media_for("image", caption="Foto"), human_agent=True)
        bodies = [call.kwargs["json"] for call in _posts(mocked)]
    assert all(b["messaging_type"] == "MESSAGE_TAG" and b["tag"] == "HUMAN_AGENT" for b in bodies)
    assert bodies[0]["message"] == REQUESTS["image"]["message"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (None, "only takes attachments by URL"),
        ("   ", "only takes attachments by URL"),
        ("file:///etc/passwd", "http(s)"),
        ("http://chatwoot:3000/rails/active_storage/x.pdf", "Meta cannot reach"),
        ("http://10.0.0.5/x.pdf", "Meta cannot reach"),
        ("http://localhost:3000/x.pdf", "Meta cannot reach"),
    ],
)
async def test_a_file_meta_cannot_fetch_is_refused_for_good(
    channel: InstagramChannel, url: str | None, why: str
) -> None:
    media = OutgoingMedia(kind="document", data=b"%PDF", mime="application/pdf", file_name="p.pdf", url=url)
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_media(session, IGSID, media)
        assert not mocked.requests
    assert exc_info.value.retryable is False and why in str(exc_info.value)


@pytest.mark.parametrize(
    ("fixture", "retryable", "auth", "invalid", "window"),
    [
        ("error_outside_window.json", False, False, False, True),
        ("error_user_unavailable.json", False, False, True, False),
        ("error_rate_limit.json", True, False, False, False),
        ("error_token_expired.json", False, True, False, False),
    ],
)
async def test_send_media_errors_are_mapped_like_send_text(
    channel: InstagramChannel, fixture: str, retryable: bool, auth: bool, invalid: bool, window: bool
) -> None:
    data = load(fixture)
    status = data.pop("_http_status", 400)
    data.pop("_source")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=status, payload=data)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_media(session, IGSID, media_for("image", caption="não vai"))
        assert len(_posts(mocked)) == 1  # no caption after a refused file
    err = exc_info.value
    assert (err.retryable, err.auth_failed, err.invalid_recipient) == (retryable, auth, invalid)
    assert isinstance(err, OutsideWindow) is window
    assert TOKEN not in str(err)


@pytest.mark.parametrize(("kind", "limit"), [("image", 8), ("video", 25), ("audio", 25), ("document", 25)])
async def test_a_file_over_instagrams_size_limit_is_refused_for_good(
    channel: InstagramChannel, kind: str, limit: int
) -> None:
    media = media_for(kind)
    big = OutgoingMedia(
        kind=media.kind, data=b"x" * (limit * 1024 * 1024 + 1), mime=media.mime, file_name=media.file_name,
        url=media.url,
    )  # fmt: skip
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(MediaTooLarge) as exc_info:
                await channel.send_media(session, IGSID, big)
        assert not mocked.requests
    assert exc_info.value.retryable is False


async def test_send_media_not_configured_is_permanent() -> None:
    channel = InstagramChannel(make_config(instagram_access_token=None))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as exc_info:
            await channel.send_media(session, IGSID, media_for("image"))
    assert exc_info.value.retryable is False


# --- long texts --------------------------------------------------------------------

LONG_REPLY = (
    "Olá, Maria! Obrigada pelo interesse no Kit Inverno. " * 12
    + "\n\n"
    + "Sobre a entrega: enviamos para todo o Brasil, e para Curitiba o prazo é de três dias úteis. " * 8
    + "\n\n"
    + "Condições de pagamento: à vista com 5% de desconto, ou em até 10x sem juros no cartão. " * 6
)


async def test_a_long_text_goes_as_pieces_in_order(channel: InstagramChannel, sleep: RecordingSleep) -> None:
    pieces = split_text(LONG_REPLY)
    assert len(pieces) > 1
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload={"recipient_id": IGSID})  # the typing_on answer
        for n in range(len(pieces)):
            mocked.post(SEND_URL, payload=sent_ok(900 + n))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, IGSID, LONG_REPLY, typing_s=2, human_agent=True)
        typing, *messages = (call.kwargs["json"] for call in _posts(mocked))
    assert typing["sender_action"] == "typing_on" and sleep.calls == [2]  # typing once, first
    texts = [m["message"]["text"] for m in messages]
    assert texts == pieces
    assert all(len(t.encode()) <= 1000 and len(t) <= 1000 for t in texts)
    assert all(m["tag"] == "HUMAN_AGENT" for m in messages)
    # Nothing is lost but the whitespace at the cuts, and paragraphs are cut between.
    assert " ".join(texts).split() == LONG_REPLY.split()
    assert texts[0].endswith("Kit Inverno.")
    assert sent.provider_message_id == mid(900 + len(pieces) - 1)


async def test_a_failing_piece_raises_after_the_earlier_ones(channel: InstagramChannel) -> None:
    data = load("error_transient.json")
    status = data.pop("_http_status", 500)
    data.pop("_source")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=sent_ok(1))
        mocked.post(SEND_URL, status=status, payload=data)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, IGSID, "palavra " * 300, typing_s=0)
        assert len(_posts(mocked)) == 2
    assert exc_info.value.retryable is True


async def test_a_text_that_fits_is_sent_untouched(channel: InstagramChannel) -> None:
    text = "ã" * 500  # exactly 1,000 bytes
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=sent_ok(1))
        async with aiohttp.ClientSession() as session:
            await channel.send_text(session, IGSID, text, typing_s=0)
        [call] = _posts(mocked)
    assert call.kwargs["json"]["message"]["text"] == text


def test_pieces_are_cut_at_the_best_boundary() -> None:
    sentence = "Frase de teste número um. "
    text = sentence * 60  # 1,560 bytes, sentences only
    pieces = split_text(text)
    assert all(p.endswith(".") for p in pieces)
    assert all(len(p.encode()) <= TEXT_MAX_BYTES for p in pieces)
    # A paragraph break in the second half wins over later sentence ends.
    para = "a" * 700 + ".\n\n" + "b " * 400
    assert split_text(para)[0] == "a" * 700 + "."


def test_an_unbroken_word_is_cut_where_it_must_be() -> None:
    word = "ç" * 1200  # 2,400 bytes without a single space
    pieces = split_text(word)
    assert "".join(pieces) == word
    assert [len(p.encode()) for p in pieces] == [1000, 1000, 400]


@pytest.mark.parametrize("size", [1001, 1999, 2000, 2001, 5003])
def test_every_piece_fits_and_nothing_is_lost(size: int) -> None:
    text = ("Olá! Tudo bem? Vamos ver: " * 400)[:size]
    pieces = split_text(text)
    assert all(0 < len(p.encode()) <= TEXT_MAX_BYTES for p in pieces)
    assert " ".join(pieces).split() == text.split()


# --- messaging_referrals: back to the thread from an ad ----------------------------


def test_a_lead_back_from_an_ad_is_a_referral_event(channel: InstagramChannel) -> None:
    result = channel.parse(load("messaging_referral_ad.json"))
    assert result.messages == [] and result.ignored == [] and result.statuses == []
    assert result.referrals == [
        ReferralEvent(
            contact_id=IGSID,
            referral=AdReferral(
                source_id="120210000000000077",
                source_type="ad",
                headline="Kit Inverno em até 10x",
                source_url="https://scontent.xx.fbcdn.net/v/t45.1600-4/kit_inverno.jpg",
            ),
            timestamp=datetime.fromtimestamp(1735819200.123, tz=UTC),
        )
    ]


def test_a_referral_with_only_a_video_creative_keeps_its_thumbnail(channel: InstagramChannel) -> None:
    payload = load("messaging_referral_ad.json")
    ctx = event_of(payload)["referral"]["ads_context_data"]
    del ctx["photo_url"], ctx["ad_title"]
    [event] = channel.parse(payload).referrals
    assert event.referral.source_url == ctx["video_url"] and event.referral.headline is None


def test_an_igme_link_is_not_an_ad_referral(channel: InstagramChannel) -> None:
    result = channel.parse(load("messaging_referral.json"))
    assert result.referrals == [] and [e.reason for e in result.ignored] == ["referral"]


def test_our_own_account_is_never_a_referred_lead(channel: InstagramChannel) -> None:
    payload = load("messaging_referral_ad.json")
    event_of(payload)["sender"]["id"] = "17841400008460056"
    result = channel.parse(payload)
    assert result.referrals == [] and [e.reason for e in result.ignored] == ["referral"]


def test_an_absurd_sender_id_on_a_referral_is_rejected(channel: InstagramChannel) -> None:
    payload = load("messaging_referral_ad.json")
    event_of(payload)["sender"]["id"] = "9" * 500
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == 422


def test_first_message_from_an_ad_keeps_its_referral(channel: InstagramChannel) -> None:
    # The Conversions API matches an Instagram lead by IGSID: the ad must stay on the message.
    result = channel.parse(load("message_ad_referral.json"))
    assert result.referrals == []
    [msg] = result.messages
    assert msg.contact_id == IGSID
    assert msg.referral == AdReferral(
        source_id="120210000000000001",
        source_type="ad",
        headline="Kit Verão com 30% OFF",
        source_url="https://scontent.xx.fbcdn.net/v/t45.1600-4/kit_verao.jpg",
    )


def test_a_referral_and_a_message_in_one_webhook_are_both_kept(channel: InstagramChannel) -> None:
    payload = load("messaging_referral_ad.json")
    message_event = copy.deepcopy(event_of(load("message_text.json")))
    payload["entry"][0]["messaging"].append(message_event)
    result = channel.parse(payload)
    assert len(result.referrals) == 1 and len(result.messages) == 1
