"""Kept for `text_svc.metering`, which names TokenUsage from here until it moves to svc_common:
the chat types are `chat_codecs`' (import them from there)."""

from chat_codecs import TokenUsage

__all__ = ["TokenUsage"]
