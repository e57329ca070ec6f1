"""What /api/health says about each channel beyond "configured".

A 401/403 from a provider means our credentials stopped working: every reply will fail
until someone fixes them, so the channel shows `error` (and the logs alert) until a
send succeeds again. Providers that report their session (WAHA) show it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.logging import get_logger

log = get_logger(__name__)

# WAHA session states that mean "cannot send or receive".
_BROKEN_CONNECTIONS = {"FAILED", "STOPPED", "SCAN_QR_CODE"}


@dataclass
class ChannelHealth:
    auth_errors: dict[str, str] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)

    def auth_failed(self, channel: str, error: str) -> None:
        if channel not in self.auth_errors:
            log.error(
                "channel_auth_failed", channel=channel, error=error, action="check the channel's credentials"
            )
        self.auth_errors[channel] = error

    def send_ok(self, channel: str) -> None:
        if self.auth_errors.pop(channel, None) is not None:
            log.info("channel_auth_recovered", channel=channel)

    def set_connection(self, channel: str, state: str) -> None:
        previous = self.connections.get(channel)
        self.connections[channel] = state
        if previous != state:
            level = log.error if state.upper() in _BROKEN_CONNECTIONS else log.info
            level("channel_connection", channel=channel, state=state, previous=previous)

    def status(self, channel: str, *, configured: bool) -> str:
        if not configured:
            return "not_configured"
        if channel in self.auth_errors:
            return "error"
        connection = self.connections.get(channel)
        if connection is not None and connection.upper() in _BROKEN_CONNECTIONS:
            return "error"
        return "configured"
