"""A real local OpenAI-compatible HTTP endpoint whose judge replies follow fixed rules, for the RAGAS judge path.

The whole client stack is the production one (openai SDK -> instructor JSON mode -> ragas collections metrics);
only the model behind `/v1/chat/completions` is replaced by rules simple enough to compute the expected scores by
hand. Per reply schema (ragas' response model, named in instructor's system message) a test may instead make the
judge answer with invalid JSON, an empty statement list, or too slowly.

Rules (`Output` = the reply schema):
- StatementGeneratorOutput: one statement per sentence of the answer.
- NLIStatementOutput: verdict 1 when the statement occurs in the context (case-insensitive), else 0.
- AnswerRelevanceOutput: the question is `relevance_question`; noncommittal when the response says "don't know".
- ContextPrecisionOutput: verdict 1 when the reference answer occurs in the context.
- ContextRecallOutput: one classification per sentence of the reference, attributed when it occurs in the context.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["ScriptedJudge"]

_TITLE = re.compile(r'"title":\s*"(\w+Output)"')
_INPUT = re.compile(r"Now perform the same with the following input\s*input:\s*(\{.*\})\s*Output:", re.S)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def _in(needle: str, haystack: str) -> bool:
    return needle.rstrip(".").casefold() in haystack.casefold()


class ScriptedJudge:
    def __init__(self, relevance_question: str = ""):
        self.relevance_question = relevance_question
        self.invalid_json: set[str] = set()  # schemas answered with text that is not JSON
        self.empty: set[str] = set()  # schemas answered with an empty list (ragas then scores NaN)
        self.delay_s: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True  # do not wait for a deliberately slow reply on shutdown
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "ScriptedJudge":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reply(self, schema: str, data: dict) -> str:
        self.calls[schema] += 1
        time.sleep(self.delay_s.get(schema, 0.0))
        if schema in self.invalid_json:
            return "The verdict is yes."
        if schema == "StatementGeneratorOutput":
            statements = [] if schema in self.empty else _sentences(data["answer"])
            return json.dumps({"statements": statements})
        if schema == "NLIStatementOutput":
            return json.dumps({"statements": [
                {"statement": s, "reason": "rule", "verdict": int(_in(s, data["context"]))} for s in data["statements"]
            ]})
        if schema == "AnswerRelevanceOutput":
            noncommittal = int("don't know" in data["response"].casefold())
            return json.dumps({"question": self.relevance_question, "noncommittal": noncommittal})
        if schema == "ContextPrecisionOutput":
            return json.dumps({"reason": "rule", "verdict": int(_in(data["answer"], data["context"]))})
        if schema == "ContextRecallOutput":
            return json.dumps({"classifications": [
                {"statement": s, "reason": "rule", "attributed": int(_in(s, data["context"]))}
                for s in _sentences(data["answer"])
            ]})
        raise ValueError(f"no rule for {schema}")

    def _handler(self):
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = "\n".join(m["content"] for m in body["messages"])
                schema = _TITLE.search(text).group(1)
                content = judge.reply(schema, json.loads(_INPUT.search(text).group(1)))
                out = json.dumps({
                    "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def log_message(self, *args):
                pass

        return Handler
