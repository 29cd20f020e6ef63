"""The transport package's exception hierarchy."""

from __future__ import annotations

import mqtt5


class TransportError(Exception):
    """Base of every error the transport raises on purpose."""


class BrokerUrlError(TransportError, ValueError):
    """A broker URL that is not mqtt://host:port or mqtts://host:port."""


class MqttError(TransportError):
    """The MQTT connection failed or the broker refused something."""


class ConnectRefusedError(MqttError):
    def __init__(self, reason: mqtt5.ConnAckReasonCode, text: str | None) -> None:
        super().__init__(f"broker refused the connection: {reason.name} {text or ''}".strip())
        self.reason = reason


class TlsVerificationError(MqttError):
    """The broker's certificate does not verify (unknown CA, wrong host name, expired)."""


class ConnectionLostError(MqttError):
    """The socket closed or keep-alive expired."""
