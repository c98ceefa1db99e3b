"""The built-in guardrails' added latency per request: `check_input` on the question plus `check_output` on the
answer (and the same answer through the stream guard in 4-character deltas), p50/p95 in ms, English and Japanese.

Questions are the quickstart's eval questions; answers are the quickstart corpus' paragraphs joined to answer size (500-1,000 characters; 250+ in Japanese),
every fourth with an email and a phone number added so that redaction runs too. The default guardrails config (the
built-in checks on, no moderation model). Target: the whole-answer path <= 2 ms p50 per request. `bench/serving.py`
runs this as its `guardrails_builtin` section; alone:

    python -m bench.guardrails [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from bench.common import machine, percentile, print_table, write_result

__all__ = ["guardrail_latency", "print_guardrails"]

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
TARGET_P50_MS = 2.0
STREAM_DELTA_CHARS = 4  # about one token of English text
PII_TAIL = {"en": " Contact ops-oncall@example.com or call 03-1234-5678.",
            "ja": " 問い合わせは ops-oncall@example.com または 03-1234-5678 まで。"}


def _texts(lang: str) -> tuple[list[str], list[str]]:
    from llmops.corpus.lang import detect_lang

    questions = [json.loads(line)["question"] for line in (QUICKSTART / "qa.jsonl").read_text("utf-8").splitlines()]
    paragraphs = [p.strip() for f in sorted((QUICKSTART / "corpus").rglob("*.md"))
                  for p in f.read_text("utf-8").split("\n\n") if len(p.strip()) > 120]
    questions = [q for q in questions if detect_lang(q) == lang]
    answers, pending = [], ""
    for paragraph in (x for x in paragraphs if detect_lang(x) == lang):  # answer-sized: 500-1,000 characters
        pending = f"{pending} {paragraph}".strip()
        if len(pending) >= (500 if lang == "en" else 250):
            answers.append(pending[:1000] + (PII_TAIL[lang] if len(answers) % 4 == 0 else ""))
            pending = ""
    return questions, answers


def guardrail_latency(requests: int = 2000) -> dict:
    """{lang: {whole_ms: {p50, p95}, stream_ms: {...}, questions, answers, mean_answer_chars}, target...}."""
    from llmops.config import GuardrailsConfig
    from llmops.guardrails.pipeline import Guardrails

    guard = Guardrails.from_config(GuardrailsConfig())
    result: dict = {"config": "GuardrailsConfig() defaults: built-in checks, no moderation", "requests": requests}

    async def run(lang: str) -> dict:
        questions, answers = _texts(lang)
        whole, streamed = [], []
        for i in range(requests + 50):  # the first 50 warm the caches
            question, answer = questions[i % len(questions)], answers[i % len(answers)]
            started = time.perf_counter()
            await guard.check_input(question, lang)
            await guard.check_output(answer, lang)
            middle = time.perf_counter()
            await guard.check_input(question, lang)
            stream = guard.output_stream(lang)
            for at in range(0, len(answer), STREAM_DELTA_CHARS):
                stream.feed(answer[at:at + STREAM_DELTA_CHARS])
            stream.finish()
            done = time.perf_counter()
            if i >= 50:
                whole.append((middle - started) * 1000)
                streamed.append((done - middle) * 1000)
        return {
            "questions": len(questions), "answers": len(answers),
            "mean_answer_chars": round(sum(map(len, answers)) / len(answers)),
            "whole_ms": {"p50": percentile(whole, 50), "p95": percentile(whole, 95)},
            "stream_ms": {"p50": percentile(streamed, 50), "p95": percentile(streamed, 95)},
        }

    for lang in ("en", "ja"):
        result[lang] = asyncio.run(run(lang))
    result["target_whole_p50_ms"] = TARGET_P50_MS
    result["target_met"] = all(result[lang]["whole_ms"]["p50"] <= TARGET_P50_MS for lang in ("en", "ja"))
    return result


def print_guardrails(result: dict) -> None:
    rows = [[lang, r["mean_answer_chars"], round(r["whole_ms"]["p50"], 3), round(r["whole_ms"]["p95"], 3),
             round(r["stream_ms"]["p50"], 3), round(r["stream_ms"]["p95"], 3)]
            for lang, r in ((k, result[k]) for k in ("en", "ja"))]
    print_table(["lang", "answer chars", "whole p50 ms", "whole p95 ms", "stream p50 ms", "stream p95 ms"], rows,
                f"built-in guardrails per request (input + output), target whole p50 <= {TARGET_P50_MS} ms: "
                f"{'met' if result['target_met'] else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests timed per language")
    parser.add_argument("--name", default="guardrails", help="bench/results/<name>.json")
    args = parser.parse_args()
    described = machine(["regex"])
    result = guardrail_latency(args.requests)
    print_guardrails(result)
    print(f"results: {write_result(args.name, {'benchmark': 'guardrails', 'machine': described, **result})}")


if __name__ == "__main__":
    main()
