"""The routes of stored conversations and feedback: `GET`/`DELETE /v1/sessions/{id}`, `POST /v1/feedback`.

The store is `request.app.state.sessions` (opened in the app's lifespan), the caller `request.state.owner` (set by
`serving.auth.ApiKeyAuth`). A session id of the wrong format is a 400 naming `session_id`, never a lookup.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from serving.auth import request_owner
from serving.protocol import FeedbackRequest, FeedbackResponse, SessionDeleted, SessionResponse, SessionTurn
from serving.sessions.store import Feedback, Session, SessionStore, check_session_id

__all__ = ["router", "session_response"]

router = APIRouter()


def _store(request: Request) -> SessionStore:
    return request.app.state.sessions


def session_response(session: Session) -> SessionResponse:
    return SessionResponse(
        id=session.id, created=session.created, updated=session.updated, expires_at=session.expires_at,
        turns=[SessionTurn(role=t.role, content=t.content, response_id=t.answer_id, created=t.created)
               for t in session.turns],
        dropped_turns=session.dropped_turns,
    )


@router.get("/v1/sessions/{session_id}", response_model=SessionResponse)
async def get_session(session_id: str, request: Request) -> SessionResponse:
    session = await _store(request).load(check_session_id(session_id), request_owner(request.state))
    return session_response(session)


@router.delete("/v1/sessions/{session_id}", response_model=SessionDeleted)
async def delete_session(session_id: str, request: Request) -> SessionDeleted:
    await _store(request).delete(check_session_id(session_id), request_owner(request.state))
    return SessionDeleted(id=session_id)


@router.post("/v1/feedback", response_model=FeedbackResponse)
async def feedback(body: FeedbackRequest, request: Request) -> FeedbackResponse:
    rating = Feedback(answer_id=body.response_id, rating=body.rating, comment=body.comment, created=time.time())
    await _store(request).add_feedback(request_owner(request.state), rating)
    request.app.state.request_log.feedback(body.response_id, body.rating, body.comment)  # a rating the store took
    return FeedbackResponse(response_id=body.response_id, rating=body.rating)
