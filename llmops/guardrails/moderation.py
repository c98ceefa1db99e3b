"""`ModerationClient`: a moderation model behind any OpenAI-compatible endpoint (e.g. Llama Guard served by vLLM).

Deterministic: temperature 0, the allowed answers requested as a guided choice ("safe", or "unsafe" and one category
code on the next line, as Llama Guard writes them), and the reply parsed the same way when the server ignores the
choice. A failure (timeout, connection, HTTP error, an unparseable reply) becomes the configured `on_error` action.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops.config import ModerationConfig
from llmops.guardrails.decision import GuardDecision, GuardStage

if TYPE_CHECKING:
    import httpx

__all__ = ["ModerationClient", "ModerationVerdict", "parse_verdict"]

REPLY_MAX_TOKENS = 16  # "unsafe\nS14" and a little room

CLASSIFY_PROMPT = """Task: Check if there is unsafe content in the {role} message below according to our safety \
policy with the categories below.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN MESSAGE>
{text}
<END MESSAGE>

Provide your safety assessment for the {role} message above:
- First line must read 'safe' or 'unsafe'.
- If unsafe, a second line must include a comma-separated list of violated categories."""


@dataclass(frozen=True)
class ModerationVerdict:
    safe: bool
    categories: tuple[str, ...] = ()


def parse_verdict(reply: str, known: frozenset[str]) -> ModerationVerdict | None:
    """"safe" | "unsafe" [newline or space] "S1,S2" (Llama Guard's form); None when it is neither."""
    words = reply.replace(",", " ").split()
    if not words:
        return None
    head = words[0].lower()
    if head == "safe" and len(words) == 1:
        return ModerationVerdict(True)
    if head == "unsafe":
        return ModerationVerdict(False, tuple(w.upper() for w in words[1:] if w.upper() in known))
    return None


class ModerationClient:
    def __init__(self, cfg: ModerationConfig):
        self.cfg = cfg
        self._url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {os.environ.get(cfg.api_key_env) or 'EMPTY'}"}
        self._known = frozenset(cfg.categories)
        self._choices = ["safe", *(f"unsafe\n{code}" for code in cfg.categories)]
        self._category_list = "\n".join(f"{code}: {name}." for code, name in cfg.categories.items())
        self._http: httpx.AsyncClient | None = None  # created on first use, on the caller's event loop

    def request_body(self, text: str, stage: GuardStage) -> dict[str, Any]:
        if self.cfg.prompt_style == "chat_template":  # the model's template (Llama Guard's) frames the check
            messages = [{"role": "user" if stage == "input" else "assistant", "content": text}]
            if stage == "output":
                messages.insert(0, {"role": "user", "content": ""})
        else:
            role = "User" if stage == "input" else "Agent"
            prompt = CLASSIFY_PROMPT.format(role=role, categories=self._category_list, text=text)
            messages = [{"role": "user", "content": prompt}]
        body: dict[str, Any] = {
            "model": self.cfg.model, "messages": messages, "temperature": 0.0, "max_tokens": REPLY_MAX_TOKENS,
        }
        if self.cfg.choice_field == "structured_outputs":
            body["structured_outputs"] = {"choice": self._choices}
        elif self.cfg.choice_field == "guided_choice":
            body["guided_choice"] = self._choices
        return body

    async def check(self, text: str, stage: GuardStage) -> GuardDecision:
        """The moderation decision on `text`: allow, refuse (detail: the categories), or `on_error`'s action."""
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.cfg.timeout_s))
        try:
            response = await self._http.post(
                self._url, content=json.dumps(self.request_body(text, stage)).encode(),
                headers={**self._headers, "Content-Type": "application/json"},
            )
        except httpx.TimeoutException:
            return self._failed(stage, "timeout")
        except httpx.HTTPError as exc:
            return self._failed(stage, f"unreachable ({type(exc).__name__})")
        if response.status_code != 200:
            return self._failed(stage, f"HTTP {response.status_code}")
        try:
            reply = response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return self._failed(stage, "malformed response")
        verdict = parse_verdict(reply, self._known)
        if verdict is None:
            return self._failed(stage, "unparseable verdict")
        if verdict.safe:
            return GuardDecision("moderation", stage, "allow", "safe")
        return GuardDecision("moderation", stage, "refuse", ",".join(verdict.categories) or "unsafe")

    def _failed(self, stage: GuardStage, why: str) -> GuardDecision:
        return GuardDecision("moderation", stage, self.cfg.on_error, f"error: {why}")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
