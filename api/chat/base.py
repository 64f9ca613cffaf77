"""The platform-neutral bot: a question from a chat workspace becomes a cited answer from
that workspace's tenant, posted back by the platform that asked.

A platform (Slack today) supplies: request verification, event parsing into
``ChatQuestion``, and ``post_answer``. Everything else — tenant mapping, answering,
citations, error replies — is shared here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from api.answering import Question, answer
from core.chat_integrations import ResolvedWorkspace
from core.db import Database
from core.errors import RagkbError
from core.settings import Settings

log = logging.getLogger("ragkb.chat")


@dataclass(frozen=True, slots=True)
class ChatCitation:
    n: int
    document_id: str
    filename: str
    page: int | None
    link: str


@dataclass(frozen=True, slots=True)
class ChatQuestion:
    workspace: ResolvedWorkspace
    channel: str
    text: str
    user: str | None = None
    # Reply in this thread (Slack's thread_ts); None: reply in the channel.
    thread: str | None = None


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    text: str
    refused: bool = False
    citations: list[ChatCitation] = field(default_factory=list)
    failed: bool = False


class ChatPlatform(Protocol):
    name: str

    def post_answer(self, question: ChatQuestion, reply: ChatAnswer) -> None: ...


def source_link(settings: Settings, document_id: str, page: int | None) -> str:
    """A portal link that opens the document (at the page) once signed in."""
    anchor = f"#document={document_id}" + (f"&page={page}" if page else "")
    return f"{settings.portal_url}/{anchor}"


def answer_in_chat(
    settings: Settings, db: Database, platform: ChatPlatform, question: ChatQuestion
) -> None:
    """Answer from the workspace's own tenant and post the reply (run in the background)."""
    try:
        with db.session() as session:
            answered = answer(settings, session, question.workspace.scope, Question(question.text))
        result = answered.result
        citations = [
            ChatCitation(
                n=c.n,
                document_id=c.document_id,
                filename=c.filename,
                page=c.page_start,
                link=source_link(settings, c.document_id, c.page_start),
            )
            for c in result.citations
        ]
        reply = ChatAnswer(text=result.answer, refused=result.refused, citations=citations)
    except RagkbError as exc:
        reply = ChatAnswer(text=f"Sorry, I could not answer: {exc.message}", failed=True)
    except Exception:
        log.exception("chat answer failed", extra={"platform": platform.name})
        reply = ChatAnswer(text="Sorry, something went wrong while answering.", failed=True)
    try:
        platform.post_answer(question, reply)
    except Exception:
        log.exception("posting the chat answer failed", extra={"platform": platform.name})
