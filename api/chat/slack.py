"""Slack: request signatures, event parsing, and answers as Block Kit messages posted with
the official ``slack_sdk`` WebClient (its base URL is a setting, so tests can record the
calls on a local server)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from api.chat.base import ChatAnswer, ChatQuestion
from core.settings import Settings
from generation.text import split_sentences

PLATFORM = "slack"
_LEAD = re.compile(r"^(.*?\[\d+(?:,\s*\d+)*\]\.?)(?:\s+(.+))?$", re.S)
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


def signature_valid(body: bytes, headers: Mapping[str, str], signing_secret: str) -> bool:
    """Slack's v0 HMAC signature over the raw body; refuses requests older than 5 minutes.
    A timestamp that is not a plain number is a bad signature like any other (slack_sdk's
    ``int()`` would raise, a 500 that told a configured workspace from an unknown one)."""
    timestamp = headers.get("x-slack-request-timestamp") or ""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return False
    verifier = SignatureVerifier(signing_secret)
    return verifier.is_valid(body, timestamp, headers.get("x-slack-signature"))


def question_text(raw: str) -> str:
    """The question without the bot's @mention."""
    return _MENTION.sub("", raw).strip()


def wants_answer(event: Mapping[str, Any]) -> bool:
    """An @mention, or a direct message from a person (never our own or a bot's message)."""
    if event.get("bot_id") or event.get("subtype"):
        return False
    if event.get("type") == "app_mention":
        return True
    return event.get("type") == "message" and event.get("channel_type") == "im"


class SlackPlatform:
    name = PLATFORM

    def __init__(self, settings: Settings) -> None:
        self._base_url = settings.chat.slack_api_base_url

    def client(self, bot_token: str) -> WebClient:
        return WebClient(token=bot_token, base_url=self._base_url, timeout=10)

    def post_answer(self, question: ChatQuestion, reply: ChatAnswer) -> None:
        self.client(question.workspace.bot_token).chat_postMessage(
            channel=question.channel,
            thread_ts=question.thread,
            text=fallback_text(reply),
            blocks=answer_blocks(reply),
            unfurl_links=False,
        )

    def post_ephemeral(self, bot_token: str, channel: str, user: str, text: str) -> None:
        self.client(bot_token).chat_postEphemeral(channel=channel, user=user, text=text)


def lead_and_rest(text: str) -> tuple[str, str]:
    """The answer's first statement (up to its first citation, else its first sentence)
    and the rest."""
    cited = _LEAD.match(text)
    if cited:
        return cited.group(1).strip(), (cited.group(2) or "").strip()
    sentences = split_sentences(text)
    return (sentences[0], " ".join(sentences[1:])) if sentences else (text, "")


def _escape(text: str) -> str:
    # Slack's mrkdwn control characters; document text must not become links or mentions.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fallback_text(reply: ChatAnswer) -> str:
    lines = [reply.text]
    for c in reply.citations:
        page = f", p. {c.page}" if c.page else ""
        lines.append(f"[{c.n}] {c.filename}{page}")
    return "\n".join(lines)


def answer_blocks(reply: ChatAnswer) -> list[dict[str, Any]]:
    # The first statement (the figure or fact asked for) in bold, the support below it.
    lead, rest = lead_and_rest(reply.text)
    text = f"*{_escape(lead)}*" + (f"\n{_escape(rest)}" if rest else "")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}
    ]
    if reply.citations:
        sources = []
        for c in reply.citations:
            page = f", p. {c.page}" if c.page else ""
            sources.append(f"[{c.n}] <{c.link}|{_escape(c.filename)}{page}>")
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(sources)[:2900]}]}
        )
    return blocks
