"""The base model and the chat SFT data: QA pairs run through the index and the shared prompt template.

Every training question is retrieved (`retrieval.k`, `retrieval.mode`) and built into the prompt evaluation and
serving use, with the gold answer as the assistant turn; questions that are also eval questions are refused.
A follow-up (a QA pair with `history`) trains with its conversation: retrieved in the deterministic `concat` form
(`QAExample.search_query`: data preparation runs without an LLM, and the served path falls back to that form), and
its recent turns in the prompt within the history budget, as the chat path builds it (`chat.max_history_turns`,
`chat.history_budget_fraction`); the stats count them (`multi_turn`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from llmops.config import LLMConfig, PipelineConfig
from llmops.corpus.documents import QAExample
from llmops.errors import FinetuneError
from llmops.rag.prompt import PromptBuilder, chat_template_overhead, prompt_budget
from llmops.corpus.qa import read_qa
from llmops.index.retriever import Retriever
from llmops.storage import atomic_write_bytes, fetch_file, is_remote, join_uri, put_file, uri_exists


# ---------------------------------------------------------------------------------------------------------------
# Base model
# ---------------------------------------------------------------------------------------------------------------


def resolve_base_model(llm: LLMConfig) -> Path:
    """A local folder holding `llm.model`: a path as is, a Hub id downloaded (or found in HF_HOME)."""
    path = Path(llm.model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FinetuneError(f"llm.model {llm.model!r} is a folder but holds no model (no config.json)")
        return path.resolve()
    if llm.model.startswith((".", "/", "~")):
        raise FinetuneError(f"llm.model {llm.model!r}: no such folder")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(llm.model, revision=llm.revision))
    except Exception as e:  # offline, unknown id, gated: say which and how to fix
        raise FinetuneError(
            f"llm.model {llm.model!r} could not be fetched from the Hugging Face Hub ({type(e).__name__}: {e}). "
            "Offline, set llm.model to a local folder or pre-download the model into HF_HOME."
        ) from None


def load_tokenizer(model_path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.chat_template is None:
        raise FinetuneError(
            f"llm.model {model_path} has no chat template: RAG-aware SFT formats records as chats. "
            "Use an instruct/chat model (or add a chat_template.jinja to the model folder)."
        )
    return tokenizer


def count_chat_tokens(tokenizer, messages: list[dict[str, str]]) -> int:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
    return len(out["input_ids"])


# ---------------------------------------------------------------------------------------------------------------
# Training data
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SFTDataset:
    """Chat records (`messages` = system, user with contexts, assistant with the gold answer) and where they are."""

    train: list[dict]
    validation: list[dict]
    digest: str  # sha256 of the JSONL file (every record, both splits)
    uri: str  # the JSONL file in the artifact store, named by its digest
    max_prompt_tokens: int  # the prompt budget the records were fitted to (`llmops.rag.prompt.prompt_budget`)
    stats: dict  # questions, records, skipped, contexts kept/dropped, answers found in the contexts, tokens


def load_training_examples(cfg: PipelineConfig, scratch: Path | None = None) -> list[QAExample]:
    """The QA pairs of `finetune.train_path` (JSONL or SQuAD JSON); refuses questions that are also eval questions."""
    ft = cfg.finetune
    if not ft.train_path:
        raise FinetuneError("finetune.train_path is not set: name the QA pairs to train on (JSONL or SQuAD JSON)")
    local = fetch_file(ft.train_path, scratch or tempfile.mkdtemp(prefix="llmops-")) if is_remote(ft.train_path) \
        else Path(ft.train_path)
    if not local.is_file():
        raise FinetuneError(f"finetune.train_path {ft.train_path}: no such file")
    examples = read_qa(local)
    if cfg.eval.qa_path and not is_remote(cfg.eval.qa_path) and Path(cfg.eval.qa_path).is_file():
        held_out = {_normalize(q.question) for q in read_qa(cfg.eval.qa_path)}
        leaked = [e.question for e in examples if _normalize(e.question) in held_out]
        if leaked:
            shown = "; ".join(repr(q) for q in leaked[:3])
            raise FinetuneError(
                f"{len(leaked)} question(s) of finetune.train_path {ft.train_path} are also in the eval set "
                f"eval.qa_path {cfg.eval.qa_path} (e.g. {shown}): the evaluation would measure memorization. "
                "Remove them from one of the files."
            )
    return examples


def _normalize(question: str) -> str:
    return " ".join(question.casefold().split())


def build_sft_records(
    examples: Sequence[QAExample],
    retriever: Retriever,
    prompts: PromptBuilder,
    tokenizer,
    *,
    k: int,
    mode: str,
    max_length: int,
    max_prompt_tokens: int | None = None,
    max_history_turns: int = 0,
    history_fraction: float = 0.0,
) -> tuple[list[dict], dict]:
    """One chat record per answerable question; returns (records, stats).

    Contexts are retrieved as in evaluation and fitted into the same prompt budget (`max_prompt_tokens`, from
    `llmops.rag.prompt.prompt_budget`). When the whole chat (answer included) is still longer than `max_length` tokens,
    the lowest-ranked contexts are dropped: trl would otherwise cut the end of the sequence, which is the answer.
    Questions without an answer, or too long even without contexts (over the budget, which evaluation and serving
    would refuse, or over `max_length`), are skipped and counted.
    """
    stats = {
        "questions": len(examples),
        "records": 0,
        "multi_turn": 0,  # records of follow-up questions, trained with their conversation
        "skipped_no_answer": 0,
        "skipped_too_long": 0,
        "contexts_kept": 0,
        "contexts_dropped_for_length": 0,
        "answer_in_contexts": 0,
        "max_tokens": 0,
        "mean_tokens": 0.0,
    }
    hits_per_question = retriever.search_batch([e.search_query for e in examples], k, mode) if examples else []
    history_tokens = int(max_prompt_tokens * history_fraction) if max_prompt_tokens is not None else None
    records, total_tokens = [], 0
    for example, hits in zip(examples, hits_per_question):
        answers = [a.strip() for a in example.answers if a.strip()]
        if not answers:
            stats["skipped_no_answer"] += 1
            continue
        answer = answers[0]
        history = [{"role": r, "content": t} for r, t in example.history[-max_history_turns:]] if max_history_turns else []
        prompt = prompts.build(example.question, hits, max_prompt_tokens, history, history_tokens)
        if max_prompt_tokens is not None and prompt.tokens is not None and prompt.tokens > max_prompt_tokens:
            stats["skipped_too_long"] += 1
            continue
        messages = [*prompt.messages, {"role": "assistant", "content": answer}]
        n_tokens = count_chat_tokens(tokenizer, messages)
        while n_tokens > max_length and prompt.contexts:
            prompt = prompts.build(example.question, prompt.contexts[:-1], None, history, history_tokens)
            messages = [*prompt.messages, {"role": "assistant", "content": answer}]
            n_tokens = count_chat_tokens(tokenizer, messages)
        if n_tokens > max_length:
            stats["skipped_too_long"] += 1
            continue
        in_contexts = any(answer.casefold() in h.text.casefold() for h in prompt.contexts)
        stats["contexts_kept"] += len(prompt.contexts)
        stats["contexts_dropped_for_length"] += len(hits) - len(prompt.contexts)
        stats["answer_in_contexts"] += int(in_contexts)
        stats["multi_turn"] += int(bool(example.history))
        stats["max_tokens"] = max(stats["max_tokens"], n_tokens)
        total_tokens += n_tokens
        records.append(
            {
                "id": example.qid,
                "lang": prompt.lang,
                "messages": messages,
                "sources": [h.source for h in prompt.contexts],
                "chunk_ids": [h.chunk_id for h in prompt.contexts],
                "answer_in_contexts": in_contexts,
                "tokens": n_tokens,
            }
        )
    stats["records"] = len(records)
    stats["mean_tokens"] = round(total_tokens / len(records), 1) if records else 0.0
    return records, stats


def split_records(records: Sequence[dict], validation_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic train/validation split: records ordered by a seeded hash of their id, the first share held out.

    Independent of input order; at least one record on each side.
    """
    if len(records) < 2:
        raise FinetuneError(
            f"{len(records)} usable training record(s): a train/validation split needs at least 2. "
            "Add QA pairs to finetune.train_path."
        )
    ranked = sorted(records, key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest())
    n_val = min(max(1, round(len(records) * validation_fraction)), len(records) - 1)
    held = {r["id"] for r in ranked[:n_val]}
    validation = [r for r in records if r["id"] in held]
    train = [r for r in records if r["id"] not in held]
    return train, validation


def build_sft_dataset(
    cfg: PipelineConfig, retriever: Retriever, tokenizer, examples: Sequence[QAExample] | None = None
) -> SFTDataset:
    """Retrieve, prompt, split and store the SFT records (`<artifacts>/work/sft/<digest>.jsonl`)."""
    llm = require_llm(cfg)
    ft = cfg.finetune
    examples = load_training_examples(cfg) if examples is None else examples
    counter = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    # The same prompt budget as the RAG chain in evaluation and serving, so training prompts are those prompts.
    max_prompt_tokens = prompt_budget(llm.max_model_len, cfg.sampling.max_tokens, chat_template_overhead(tokenizer))
    if max_prompt_tokens <= 0:
        raise FinetuneError(
            f"sampling.max_tokens ({cfg.sampling.max_tokens}) and the chat template leave no room for a prompt in "
            f"llm.max_model_len ({llm.max_model_len}): lower sampling.max_tokens or raise llm.max_model_len"
        )
    records, stats = build_sft_records(
        examples,
        retriever,
        PromptBuilder(cfg.prompt, count_tokens=counter),
        tokenizer,
        k=cfg.retrieval.k,
        mode=cfg.retrieval.mode,
        max_length=ft.max_length,
        max_prompt_tokens=max_prompt_tokens,
        max_history_turns=cfg.chat.max_history_turns,
        history_fraction=cfg.chat.history_budget_fraction,
    )
    train, validation = split_records(records, ft.validation_fraction, ft.seed)
    split_of = {r["id"]: "validation" for r in validation}
    lines = [
        json.dumps({"split": split_of.get(r["id"], "train"), **r}, ensure_ascii=False, sort_keys=True)
        for r in records
    ]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    uri = join_uri(cfg.artifacts.root, "work", "sft", f"{digest[:16]}.jsonl")
    if not uri_exists(uri):
        if is_remote(uri):
            scratch = Path(tempfile.mkdtemp(prefix="llmops-"))
            try:
                (scratch / "sft.jsonl").write_bytes(data)
                put_file(scratch / "sft.jsonl", uri)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        else:
            atomic_write_bytes(uri, data)
    stats = {**stats, "train": len(train), "validation": len(validation), "index_version": retriever.version}
    return SFTDataset(
        train=train, validation=validation, digest=digest, uri=uri, max_prompt_tokens=max_prompt_tokens, stats=stats
    )


def require_llm(cfg: PipelineConfig) -> LLMConfig:
    if cfg.llm is None:
        raise FinetuneError("fine-tuning needs an llm section in the config (the base model)")
    return cfg.llm
