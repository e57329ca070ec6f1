"""Settings -> each channel adapter's own config (channels/*/config.py).

The adapters never see Settings: this is the one place that knows which environment
variable feeds which adapter field, so a renamed setting is a one-line change here.
"""

from __future__ import annotations

from channels.instagram import InstagramConfig
from channels.media_fetch import MediaConfig
from channels.registry import ChannelsConfig
from channels.waha import WahaConfig
from channels.whatsapp_cloud import WhatsAppCloudConfig
from channels.zapi import ZapiConfig
from core.settings import Settings


def media_config(settings: Settings) -> MediaConfig:
    return MediaConfig(
        waha_url=settings.waha_url,
        zapi_base_url=settings.zapi_base_url,
        meta_graph_url=settings.meta_graph_url,
        trusted_origins=tuple(settings.media_trusted_origins),
    )


def zapi_config(settings: Settings) -> ZapiConfig:
    return ZapiConfig(
        base_url=settings.zapi_base_url,
        instance_id=settings.zapi_instance_id,
        instance_token=settings.zapi_instance_token,
        client_token=settings.zapi_client_token,
        webhook_secret=settings.zapi_webhook_secret,
        rate_per_s=settings.zapi_rate_per_s,
        http_timeout_s=settings.http_timeout_s,
        media=media_config(settings),
    )


def waha_config(settings: Settings) -> WahaConfig:
    return WahaConfig(
        url=settings.waha_url,
        api_key=settings.waha_api_key,
        session=settings.waha_session,
        webhook_hmac_key=settings.waha_webhook_hmac_key,
        webhook_secret=settings.waha_webhook_secret,
        rate_per_s=settings.waha_rate_per_s,
        http_timeout_s=settings.http_timeout_s,
        media=media_config(settings),
        presence_subscribe=settings.waha_presence_subscribe,
    )


def whatsapp_cloud_config(settings: Settings) -> WhatsAppCloudConfig:
    return WhatsAppCloudConfig(
        phone_number_id=settings.whatsapp_phone_number_id,
        access_token=settings.whatsapp_access_token,
        template_language=settings.whatsapp_template_language,
        graph_url=settings.meta_graph_url,
        graph_version=settings.meta_graph_version,
        app_secret=settings.meta_app_secret,
        rate_per_s=settings.whatsapp_rate_per_s,
        http_timeout_s=settings.http_timeout_s,
        media=media_config(settings),
    )


def instagram_config(settings: Settings) -> InstagramConfig:
    return InstagramConfig(
        account_id=settings.instagram_account_id,
        access_token=settings.instagram_access_token,
        graph_url=settings.meta_graph_url,
        graph_version=settings.meta_graph_version,
        app_secret=settings.meta_app_secret,
        rate_per_s=settings.instagram_rate_per_s,
        http_timeout_s=settings.http_timeout_s,
        media=media_config(settings),
    )


def channels_config(settings: Settings) -> ChannelsConfig:
    return ChannelsConfig(
        zapi=zapi_config(settings),
        waha=waha_config(settings),
        whatsapp_cloud=whatsapp_cloud_config(settings),
        instagram=instagram_config(settings),
    )
