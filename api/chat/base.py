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

from sqlalchemy.orm import Session

from core.chat_integrations import ResolvedWorkspace
from core.errors import RagkbError
from core.limits import TenantLimits, reserve_questions
from core.models import Tenant
from core.ratelimit import Bucket, Limiter, concurrency_slot, enforce_rate
from core.settings import Settings
from core.tenancy import TenantScope
from services.answering import Question, answer
from services.container import Services

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


def _tenant_limits(session: Session, settings: Settings, scope: TenantScope) -> TenantLimits:
    tenant = session.get(Tenant, scope.tenant_id)
    return TenantLimits.defaults(settings).with_overrides(tenant.limits if tenant else None)


def source_link(settings: Settings, document_id: str, page: int | None) -> str:
    """A portal link that opens the document (at the page) once signed in."""
    anchor = f"#document={document_id}" + (f"&page={page}" if page else "")
    return f"{settings.portal_url}/{anchor}"


def answer_in_chat(
    services: Services,
    limiter: Limiter,
    platform: ChatPlatform,
    question: ChatQuestion,
) -> None:
    """Answer from the workspace's own tenant and post the reply (run in the background).

    Chat questions count like API ones: the workspace has a bucket of its own (as an API key
    does), and the tenant's bucket, daily question quota and concurrent-question slots apply;
    past a limit the reply says so instead of answering."""
    settings, scope = services.settings, question.workspace.scope
    try:
        with services.db.session() as session:
            limits = _tenant_limits(session, settings, scope)
            enforce_rate(
                limiter,
                f"chat:{question.workspace.integration_id}",
                Bucket(limits.rate_limit_key_rps, limits.rate_limit_key_burst),
                "chat workspace",
            )
            enforce_rate(
                limiter,
                f"tenant:{scope.tenant_id}",
                Bucket(limits.rate_limit_tenant_rps, limits.rate_limit_tenant_burst),
                "tenant",
            )
            slot = f"queries:{scope.tenant_id}"
            with concurrency_slot(limiter, slot, limits.max_concurrent_queries, 300, "questions"):
                reserve_questions(services.db, scope, limits)
                answered = answer(services, session, scope, Question(question.text))
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
