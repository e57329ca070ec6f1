"""WhatsApp Cloud API: what issue 15 added on top of sending text, each checked against
Meta's published OpenAPI examples (tests/fixtures/whatsapp_cloud/*, `_source` names the
example): template parameters, a seller's file (upload, then send by media id), the read
receipt with the typing bubble, and an inbound media id resolved for the Chatwoot mirror."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from channels.base import OutgoingMedia, media_sender, read_receipts, templates
from channels.errors import MediaRefused
from channels.whatsapp_cloud import MEDIA_SCHEME, MediaTooLarge, OutsideWindow, WhatsAppCloudChannel
from core.errors import ProviderError
from tests.channels.test_whatsapp_cloud import (
    ACCESS_TOKEN,
    GRAPH,
    LEAD,
    PHONE_NUMBER_ID,
    SEND_URL,
    VERSION,
    _meta_error,
    _sent_request,
    load,
    make_config,
)

UPLOAD_URL = f"{GRAPH}/{VERSION}/{PHONE_NUMBER_ID}/media"
UPLOADED_ID = "4490709327384033"


@pytest.fixture
def channel() -> WhatsAppCloudChannel:
    return WhatsAppCloudChannel(make_config())


def example(name: str) -> dict[str, Any]:
    data = load(name)
    data.pop("_source")
    return data


def uploaded() -> dict[str, Any]:
    return example("upload_media_response.json")


def form_fields(form: aiohttp.FormData) -> dict[str, tuple[Any, str | None, str | None]]:
    """name -> (value, filename, content type) of a multipart form as aiohttp will send it."""
    fields = {}
    for options, headers, value in form._fields:
        fields[options["name"]] = (value, options.get("filename"), headers.get("Content-Type"))
    return fields


def posts(mocked: aioresponses, url: str) -> list[Any]:
    return [
        call
        for key, calls in mocked.requests.items()
        if key[0] == "POST" and str(key[1]) == url
        for call in calls
    ]


PDF = OutgoingMedia(
    kind="document",
    data=b"%PDF-1.7 proposta",
    mime="application/pdf",
    file_name="proposta.pdf",
    caption="Segue a proposta",
)


def media_for(kind: str) -> OutgoingMedia:
    return {
        "image": OutgoingMedia(kind="image", data=b"\xff\xd8\xff", mime="image/jpeg", file_name="foto.jpg",
                               caption="Foto do produto"),
        "document": PDF,
        "video": OutgoingMedia(kind="video", data=b"\x00\x00\x00\x18ftypmp42", mime="video/mp4",
                               file_name="demo.mp4", caption="Veja o produto funcionando"),
        "audio": OutgoingMedia(kind="audio", data=b"OggS", mime="audio/ogg", file_name="audio.ogg"),
    }[kind]  # fmt: skip


def test_the_capabilities_are_found_by_protocol(channel: WhatsAppCloudChannel) -> None:
    assert media_sender(channel) is channel
    assert templates(channel) is channel
    assert read_receipts(channel) is channel


# --- template parameters -----------------------------------------------------------


async def test_template_parameters_fill_the_body_as_the_spec_example(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_template_response.json"))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_template(
                session, LEAD, name="retomar_conversa", language="pt_BR", parameters=["Maria", "Kit Verão"]
            )
        body = _sent_request(mocked).kwargs["json"]
    assert body == example("send_template_parameters_request.json")
    assert sent.provider_message_id == "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjQ1QTc5NjlCRkQ0RTQ4QUZGOAA="


async def test_template_without_parameters_has_no_components(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_template_response.json"))
        async with aiohttp.ClientSession() as session:
            await channel.send_template(session, LEAD, name="retomar_conversa", parameters=())
        body = _sent_request(mocked).kwargs["json"]
    assert "components" not in body["template"]


async def test_template_parameters_are_folded_to_what_meta_accepts(channel: WhatsAppCloudChannel) -> None:
    # Meta refuses new lines, tabs and runs of more than four spaces in a parameter.
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_template_response.json"))
        async with aiohttp.ClientSession() as session:
            await channel.send_template(
                session,
                LEAD,
                name="retomar_conversa",
                parameters=["  Maria\n da   \t Silva ", "Kit      Verão"],
            )
        params = _sent_request(mocked).kwargs["json"]["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params] == ["Maria da Silva", "Kit Verão"]


async def test_a_single_string_is_one_parameter(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_template_response.json"))
        async with aiohttp.ClientSession() as session:
            await channel.send_template(session, LEAD, name="retomar_conversa", parameters="Maria")
        params = _sent_request(mocked).kwargs["json"]["template"]["components"][0]["parameters"]
    assert params == [{"type": "text", "text": "Maria"}]


async def test_a_blank_template_parameter_is_refused_before_sending(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_template(
                    session, LEAD, name="retomar_conversa", parameters=["Maria", " \n "]
                )
        assert not mocked.requests
    assert exc_info.value.retryable is False and "{{2}}" in str(exc_info.value)


# --- send_media: upload, then send by id -------------------------------------------


@pytest.mark.parametrize("kind", ["image", "document", "video", "audio"])
async def test_send_media_uploads_then_sends_the_spec_example(
    channel: WhatsAppCloudChannel, kind: str
) -> None:
    media = media_for(kind)
    with aioresponses() as mocked:
        mocked.post(UPLOAD_URL, payload=uploaded())
        mocked.post(SEND_URL, payload=load("send_text_response.json"))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_media(session, LEAD, media, human_agent=True)
        upload = _sent_request(mocked, UPLOAD_URL)
        send = _sent_request(mocked, SEND_URL)
    assert sent.provider_message_id == "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjI4NkY0N0JGQkQ5RjQxMTJGMQA="
    # The upload is multipart: messaging_product, the MIME type, and the file itself.
    fields = form_fields(upload.kwargs["data"])
    assert fields["messaging_product"] == ("whatsapp", None, None)
    assert fields["type"] == (media.mime, None, None)
    assert fields["file"] == (media.data, media.file_name, media.mime)
    assert upload.kwargs["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "Content-Type" not in upload.kwargs["headers"]  # aiohttp sets the multipart boundary
    assert send.kwargs["json"] == example("send_media_by_id_requests.json")[kind]


async def test_audio_caption_follows_as_a_text(channel: WhatsAppCloudChannel) -> None:
    voice = OutgoingMedia(
        kind="audio", data=b"OggS", mime="audio/ogg", file_name="a.ogg", caption="Ouça isto"
    )
    with aioresponses() as mocked:
        mocked.post(UPLOAD_URL, payload=uploaded())
        mocked.post(SEND_URL, payload={"messages": [{"id": "wamid.AUDIO"}]})
        mocked.post(SEND_URL, payload={"messages": [{"id": "wamid.CAPTION"}]})
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_media(session, LEAD, voice)
        first, second = (call.kwargs["json"] for call in posts(mocked, SEND_URL))
    assert first["audio"] == {"id": UPLOADED_ID}
    assert second["type"] == "text" and second["text"]["body"] == "Ouça isto"
    assert sent.provider_message_id == "wamid.AUDIO"  # the file is what the person sent


async def test_a_caption_too_long_for_media_follows_as_a_text(channel: WhatsAppCloudChannel) -> None:
    caption = "palavra " * 200  # 1,600 characters: over MediaObject_1.caption's 1,024
    media = OutgoingMedia(
        kind="image", data=b"\xff\xd8", mime="image/jpeg", file_name="f.jpg", caption=caption
    )
    with aioresponses() as mocked:
        mocked.post(UPLOAD_URL, payload=uploaded())
        mocked.post(SEND_URL, payload={"messages": [{"id": "wamid.IMG"}]})
        mocked.post(SEND_URL, payload={"messages": [{"id": "wamid.TXT"}]})
        async with aiohttp.ClientSession() as session:
            await channel.send_media(session, LEAD, media)
        first, second = (call.kwargs["json"] for call in posts(mocked, SEND_URL))
    assert first["image"] == {"id": UPLOADED_ID}
    assert second["text"]["body"] == caption.strip()


async def test_send_media_to_a_username_user_uses_recipient(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(UPLOAD_URL, payload=uploaded())
        mocked.post(SEND_URL, payload=load("send_text_response.json"))
        async with aiohttp.ClientSession() as session:
            await channel.send_media(session, "BR.1502576394655843", PDF)
        body = _sent_request(mocked, SEND_URL).kwargs["json"]
    assert body["recipient"] == "BR.1502576394655843" and "to" not in body


_SEND_ERRORS = [
    # fixture, retryable, auth_failed, invalid_recipient, outside_window
    ("error_131047.json", False, False, False, True),
    ("error_131026.json", False, False, True, False),
    ("error_130429.json", True, False, False, False),
    ("error_190.json", False, True, False, False),
]


@pytest.mark.parametrize(("fixture", "retryable", "auth", "invalid", "window"), _SEND_ERRORS)
async def test_send_media_errors_are_mapped_like_send_text(
    channel: WhatsAppCloudChannel, fixture: str, retryable: bool, auth: bool, invalid: bool, window: bool
) -> None:
    status, body = _meta_error(fixture)
    with aioresponses() as mocked:
        mocked.post(UPLOAD_URL, payload=uploaded())
        mocked.post(SEND_URL, status=status, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_media(session, LEAD, PDF)
    err = exc_info.value
    assert (err.retryable, err.auth_failed, err.invalid_recipient) == (retryable, auth, invalid)
    assert isinstance(err, OutsideWindow) is window
    assert ACCESS_TOKEN not in str(err)


@pytest.mark.parametrize(
    ("status", "body", "retryable", "auth_failed"),
    [
        (429, "", True, False),
        (500, "<html>Internal</html>", True, False),
        (503, "", True, False),
        *[(_meta_error(f)[0], _meta_error(f)[1], r, a) for f, r, a in
          [("error_190.json", False, True), ("error_80007.json", True, False),
           ("error_100_invalid_parameter.json", False, False)]],
    ],
)  # fmt: skip
async def test_upload_errors_send_nothing(
    channel: WhatsAppCloudChannel, status: int, body: Any, retryable: bool, auth_failed: bool
) -> None:
    with aioresponses() as mocked:
        if isinstance(body, dict):
            mocked.post(UPLOAD_URL, status=status, payload=body)
        else:
            mocked.post(UPLOAD_URL, status=status, body=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_media(session, LEAD, PDF)
        assert posts(mocked, SEND_URL) == []
    assert (exc_info.value.retryable, exc_info.value.auth_failed) == (retryable, auth_failed)
    assert exc_info.value.status == status


@pytest.mark.parametrize("answer", [{}, {"id": ""}, {"id": "../../me"}, {"id": 4490709327384033}])
async def test_an_upload_without_a_usable_media_id_is_retryable(
    channel: WhatsAppCloudChannel, answer: dict[str, Any]
) -> None:
    with aioresponses() as mocked:
        mocked.post(UPLOAD_URL, payload=answer)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_media(session, LEAD, PDF)
        assert posts(mocked, SEND_URL) == []
    assert exc_info.value.retryable is True


@pytest.mark.parametrize("exception", [TimeoutError(), aiohttp.ClientConnectionError()])
async def test_upload_transport_failures_are_retryable(
    channel: WhatsAppCloudChannel, exception: Exception
) -> None:
    with aioresponses() as mocked:
        mocked.post(UPLOAD_URL, exception=exception)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_media(session, LEAD, PDF)
    assert exc_info.value.retryable is True


@pytest.mark.parametrize(
    ("media", "contact", "invalid_recipient", "too_large"),
    [
        (PDF, "not a number", True, False),
        (OutgoingMedia(kind="document", data=b"", mime="application/pdf", file_name="x.pdf"), LEAD, False, False),
        (OutgoingMedia(kind="image", data=b"x", mime=" ", file_name="x"), LEAD, False, False),
        (OutgoingMedia(kind="image", data=b"x" * (5 * 1024 * 1024 + 1), mime="image/jpeg", file_name="x"),
         LEAD, False, True),
        (OutgoingMedia(kind="document", data=b"x", mime="text/plain", file_name="x", caption="y" * 4097),
         LEAD, False, False),
    ],
)  # fmt: skip
async def test_unsendable_media_fails_before_any_upload(
    channel: WhatsAppCloudChannel,
    media: OutgoingMedia,
    contact: str,
    invalid_recipient: bool,
    too_large: bool,
) -> None:
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_media(session, contact, media)
        assert not mocked.requests
    assert exc_info.value.retryable is False
    assert exc_info.value.invalid_recipient is invalid_recipient
    assert isinstance(exc_info.value, MediaTooLarge) is too_large


async def test_send_media_not_configured_is_permanent() -> None:
    channel = WhatsAppCloudChannel(make_config(whatsapp_access_token=None))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as exc_info:
            await channel.send_media(session, LEAD, PDF)
    assert exc_info.value.retryable is False


# --- mark_read with the typing bubble ----------------------------------------------


async def test_mark_read_with_typing_is_the_spec_example(channel: WhatsAppCloudChannel) -> None:
    request = example("mark_read_typing_request.json")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=example("mark_read_response.json"))
        async with aiohttp.ClientSession() as session:
            await channel.mark_read(session, request["message_id"], typing=True)
        call = _sent_request(mocked)
    assert call.kwargs["json"] == request
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_mark_read_without_typing_is_the_example_without_the_indicator(
    channel: WhatsAppCloudChannel,
) -> None:
    request = example("mark_read_typing_request.json")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=example("mark_read_response.json"))
        async with aiohttp.ClientSession() as session:
            await channel.mark_read(session, request["message_id"])
        body = _sent_request(mocked).kwargs["json"]
    del request["typing_indicator"]
    assert body == request


# --- inbound media resolved for the Chatwoot mirror --------------------------------

RETRIEVED = example("retrieve_media_url_response.json")
RETRIEVED_ID = RETRIEVED["id"]
LOOKUP_URL = f"{GRAPH}/{VERSION}/{RETRIEVED_ID}?phone_number_id={PHONE_NUMBER_ID}"


async def test_retrieve_media_url_example_resolves_to_the_file(channel: WhatsAppCloudChannel) -> None:
    photo = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    with aioresponses() as mocked:
        mocked.get(LOOKUP_URL, payload=RETRIEVED)
        mocked.get(RETRIEVED["url"], body=photo, content_type="image/jpeg")
        async with aiohttp.ClientSession() as session:
            data = await channel.fetch_media(session, f"{MEDIA_SCHEME}{RETRIEVED_ID}", max_bytes=303833)
        lookup = _sent_request(mocked, LOOKUP_URL, "GET")
        download = _sent_request(mocked, RETRIEVED["url"], "GET")
    assert data == photo
    assert lookup.kwargs["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert download.kwargs["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_the_declared_file_size_of_the_example_is_enforced(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.get(LOOKUP_URL, payload=RETRIEVED)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(MediaTooLarge):
                await channel.fetch_media(session, f"{MEDIA_SCHEME}{RETRIEVED_ID}", max_bytes=303832)
        assert [key[1].host for key in mocked.requests] == ["graph.facebook.com"]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/whatsapp_business/attachments/?mid=1",
        "https://lookaside.fbsbx.com.evil.example/x",
        "http://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",  # the token never goes in clear
        "https://169.254.169.254/latest/meta-data/",
    ],
)
async def test_the_token_follows_only_to_metas_media_cdn(channel: WhatsAppCloudChannel, url: str) -> None:
    info = copy.deepcopy(RETRIEVED)
    info["url"] = url
    with aioresponses() as mocked:
        mocked.get(LOOKUP_URL, payload=info)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(MediaRefused) as exc_info:
                await channel.fetch_media(session, f"{MEDIA_SCHEME}{RETRIEVED_ID}", max_bytes=10_000_000)
        assert [key[1].host for key in mocked.requests] == ["graph.facebook.com"]
    assert exc_info.value.retryable is False and ACCESS_TOKEN not in str(exc_info.value)


async def test_a_download_on_the_configured_graph_origin_is_allowed() -> None:
    # A Graph proxy (or a local stand-in) may serve the files itself.
    graph = "http://127.0.0.1:9999"
    channel = WhatsAppCloudChannel(make_config(meta_graph_url=graph))
    info = copy.deepcopy(RETRIEVED)
    info["url"] = f"{graph}/files/{RETRIEVED_ID}"
    info["file_size"] = "4"
    with aioresponses() as mocked:
        mocked.get(f"{graph}/{VERSION}/{RETRIEVED_ID}?phone_number_id={PHONE_NUMBER_ID}", payload=info)
        mocked.get(info["url"], body=b"jpeg")
        async with aiohttp.ClientSession() as session:
            assert (
                await channel.fetch_media(session, f"{MEDIA_SCHEME}{RETRIEVED_ID}", max_bytes=100) == b"jpeg"
            )


async def test_a_lookup_answer_that_is_not_json_is_retryable(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.get(LOOKUP_URL, body="<html>ok</html>")
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.fetch_media(session, f"{MEDIA_SCHEME}{RETRIEVED_ID}", max_bytes=100)
    assert exc_info.value.retryable is True
