"""RAG-aware LoRA fine-tuning: QA pairs + retrieved contexts -> chat SFT data -> trl SFTTrainer -> PEFT adapter.

The model is trained on exactly the prompts it will see in evaluation and serving: every training question is run
through the index (`retrieval.k`, `retrieval.mode`) and the shared `PromptBuilder`, and the gold answer becomes the
assistant turn. The loss covers the assistant turn only: records are given to trl as prompt/completion pairs, which
works with any chat template (the `{% generation %}` markers that trl's `assistant_only_loss` needs are rare in
real models' templates).

Plain functions, in the order `finetune` calls them:

    load_training_examples -> build_sft_dataset (build_sft_records, split_records) -> adapter_version
    -> train_lora -> publish the adapter artifact (adapter files + adapter_manifest.json, `llmops.finetune.manifest`)

The adapter artifact is content-addressed like an index: its version is a digest of the base model's files, the
training data, the hyperparameters and the code version, so a rerun with the same inputs reuses the verified
existing version instead of training again.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from llmops.index.artifact import FileEntry, git_sha, library_versions, materialize, utc_now
from llmops.config import FinetuneConfig, LLMConfig, PipelineConfig
from llmops.corpus.documents import QAExample
from llmops.index.embedding import model_digest
from llmops.errors import FinetuneError
from llmops.finetune.manifest import (
    ADAPTER_MANIFEST,
    ADAPTER_SCHEMA_VERSION,
    AdapterLineage,
    AdapterManifest,
    BaseModelSection,
    LoraSection,
    RetrievalSettings,
    TrainingDataSection,
    TrainingHyperparameters,
    TrainingSection,
    verify_adapter,
)
from llmops.rag.prompt import PromptBuilder, chat_template_overhead, prompt_budget
from llmops.corpus.qa import read_qa
from llmops.index.retriever import Retriever
from llmops.provenance.stage_inputs import config_record, stage_code
from llmops.storage import (
    atomic_write_bytes,
    atomic_write_json,
    digest_of,
    fetch_file,
    file_checksums,
    is_remote,
    join_uri,
    publish_directory,
    put_file,
    staging_dir,
    uri_exists,
)

__all__ = [
    "FinetuneOutput",
    "SFTDataset",
    "TrainResult",
    "adapter_version",
    "build_sft_dataset",
    "build_sft_records",
    "finetune",
    "load_training_examples",
    "resolve_base_model",
    "split_records",
    "train_lora",
]

_TRAINING_LIBRARIES = ("peft", "trl", "accelerate", "bitsandbytes", "datasets")


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


def _load_tokenizer(model_path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.chat_template is None:
        raise FinetuneError(
            f"llm.model {model_path} has no chat template: RAG-aware SFT formats records as chats. "
            "Use an instruct/chat model (or add a chat_template.jinja to the model folder)."
        )
    return tokenizer


def _count_chat_tokens(tokenizer, messages: list[dict[str, str]]) -> int:
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
        "skipped_no_answer": 0,
        "skipped_too_long": 0,
        "contexts_kept": 0,
        "contexts_dropped_for_length": 0,
        "answer_in_contexts": 0,
        "max_tokens": 0,
        "mean_tokens": 0.0,
    }
    hits_per_question = retriever.search_batch([e.question for e in examples], k, mode) if examples else []
    records, total_tokens = [], 0
    for example, hits in zip(examples, hits_per_question):
        answers = [a.strip() for a in example.answers if a.strip()]
        if not answers:
            stats["skipped_no_answer"] += 1
            continue
        answer = answers[0]
        prompt = prompts.build(example.question, hits, max_prompt_tokens)
        if max_prompt_tokens is not None and prompt.tokens is not None and prompt.tokens > max_prompt_tokens:
            stats["skipped_too_long"] += 1
            continue
        messages = [*prompt.messages, {"role": "assistant", "content": answer}]
        n_tokens = _count_chat_tokens(tokenizer, messages)
        while n_tokens > max_length and prompt.contexts:
            prompt = prompts.build(example.question, prompt.contexts[:-1])
            messages = [*prompt.messages, {"role": "assistant", "content": answer}]
            n_tokens = _count_chat_tokens(tokenizer, messages)
        if n_tokens > max_length:
            stats["skipped_too_long"] += 1
            continue
        in_contexts = any(answer.casefold() in h.text.casefold() for h in prompt.contexts)
        stats["contexts_kept"] += len(prompt.contexts)
        stats["contexts_dropped_for_length"] += len(hits) - len(prompt.contexts)
        stats["answer_in_contexts"] += int(in_contexts)
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
    llm = _require_llm(cfg)
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


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    train_loss: list[tuple[int, float]]  # (optimizer step, training loss)
    validation_loss: list[tuple[int, float]]  # (optimizer step, validation loss); step 0 is before training
    steps: int
    epochs: float
    seconds: float
    device: str
    precision: str  # fp32 | bf16 | 4bit-nf4+bf16 ...
    loss_on: str = "assistant (completion) tokens only"
    planned_steps: int | None = None  # the schedule's estimate (`_schedule`), and its logging and evaluation steps
    log_every: int | None = None
    eval_every: int | None = None

    def section(self) -> TrainingSection:
        """The manifest's `training` section."""
        return TrainingSection(
            train_loss=self.train_loss,
            validation_loss=self.validation_loss,
            final_train_loss=self.train_loss[-1][1] if self.train_loss else None,
            initial_validation_loss=self.validation_loss[0][1] if self.validation_loss else None,
            final_validation_loss=self.validation_loss[-1][1] if self.validation_loss else None,
            steps=self.steps,
            epochs=self.epochs,
            seconds=round(self.seconds, 3),
            device=self.device,
            precision=self.precision,
            loss_on=self.loss_on,
            planned_steps=self.planned_steps,
            log_every=self.log_every,
            eval_every=self.eval_every,
        )


def _device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise FinetuneError("llm.device is cuda but no CUDA GPU is visible; set llm.device: auto or cpu")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def training_precision(ft: FinetuneConfig, device: str) -> str:
    """bf16 on GPUs that support it (fp32 on older ones), fp32 on CPU; 4-bit QLoRA only on a GPU."""
    import torch

    if ft.quantization == "4bit":
        if device != "cuda":
            raise FinetuneError(
                "finetune.quantization: 4bit (QLoRA) needs a CUDA GPU, and this run is on CPU. "
                "Set finetune.quantization: none to train in fp32 on CPU."
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise FinetuneError(
                "finetune.quantization: 4bit needs bitsandbytes, which is not installed: pip install bitsandbytes "
                "(the GPU image has it), or set finetune.quantization: none"
            ) from None
    if device == "cuda" and torch.cuda.is_bf16_supported():
        base = "bf16"
    else:
        base = "fp32"
    return f"4bit-nf4+{base}" if ft.quantization == "4bit" else base


def check_lora_rank(ft: FinetuneConfig, llm: LLMConfig) -> None:
    if ft.lora.r > llm.max_lora_rank:
        raise FinetuneError(
            f"finetune.lora.r ({ft.lora.r}) exceeds llm.max_lora_rank ({llm.max_lora_rank}): vLLM (--max-lora-rank) "
            "could not serve the adapter. Lower finetune.lora.r or raise llm.max_lora_rank (and the server's flag)."
        )


def _schedule(n_train: int, ft: FinetuneConfig) -> tuple[int, int, int]:
    """(estimated optimizer steps, log every, evaluate every): about 50 loss points and 10 validation points."""
    per_epoch = max(1, math.ceil(n_train / (ft.batch_size * ft.gradient_accumulation_steps)))
    total = ft.max_steps or max(1, math.ceil(per_epoch * ft.epochs))
    return total, max(1, total // 50), max(1, total // 10)


def train_lora(
    model_path: Path,
    train: Sequence[dict],
    validation: Sequence[dict],
    ft: FinetuneConfig,
    out_dir: Path,
    *,
    device: str = "auto",
    base_model_name: str | None = None,
) -> TrainResult:
    """LoRA SFT of the model at `model_path` on chat records; writes the PEFT adapter files into `out_dir`.

    Records are passed to trl as prompt (system + user) / completion (assistant) pairs, so the loss covers the
    answer only. Validation loss is measured before training (step 0), about ten times during it, and at the end.
    No checkpoints, no Hub, no experiment trackers.
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig as PeftLoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    if not train or not validation:
        raise FinetuneError(f"train_lora needs train and validation records (got {len(train)} and {len(validation)})")
    device = _device(device)
    precision = training_precision(ft, device)
    tokenizer = _load_tokenizer(model_path)
    dtype = torch.bfloat16 if "bf16" in precision else torch.float32
    load_kwargs: dict[str, Any] = {"dtype": dtype}
    if ft.quantization == "4bit":
        from transformers import BitsAndBytesConfig

        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
        load_kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(str(model_path), **load_kwargs)
    if ft.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    _check_target_modules(model, ft.lora.target_modules)

    total, log_every, eval_every = _schedule(len(train), ft)
    scratch = Path(tempfile.mkdtemp(prefix="llmops-sft-"))
    try:
        args = SFTConfig(
            output_dir=str(scratch),
            per_device_train_batch_size=ft.batch_size,
            per_device_eval_batch_size=ft.batch_size,
            gradient_accumulation_steps=ft.gradient_accumulation_steps,
            learning_rate=ft.learning_rate,
            num_train_epochs=ft.epochs,
            max_steps=ft.max_steps or -1,
            max_length=ft.max_length,
            packing=ft.packing,
            completion_only_loss=True,
            seed=ft.seed,
            data_seed=ft.seed,
            logging_strategy="steps",
            logging_steps=log_every,
            logging_first_step=True,
            eval_strategy="steps",
            eval_steps=eval_every,
            save_strategy="no",
            report_to=[],
            bf16="bf16" in precision,
            fp16=False,
            use_cpu=device == "cpu",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list([_prompt_completion(r) for r in train]),
            eval_dataset=Dataset.from_list([_prompt_completion(r) for r in validation]),
            processing_class=tokenizer,
            peft_config=PeftLoraConfig(
                r=ft.lora.r,
                lora_alpha=ft.lora.alpha,
                lora_dropout=ft.lora.dropout,
                target_modules=list(ft.lora.target_modules),
                bias="none",
                task_type="CAUSAL_LM",
            ),
        )
        start = time.perf_counter()
        # Step 0: the validation loss before training, the curve's starting point (train() resets the log).
        initial = trainer.evaluate()["eval_loss"]
        trainer.train()
        if trainer.state.global_step % eval_every:
            trainer.evaluate()  # the last step was not an evaluation step: measure the final adapter too
        seconds = time.perf_counter() - start
        history = trainer.state.log_history
        train_curve = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]
        val_curve = [(0, float(initial))] + [
            (int(h["step"]), float(h["eval_loss"])) for h in history if "eval_loss" in h
        ]
        peft_model = trainer.model
        # The adapter names the base model as configured (a Hub id), not this machine's cache path.
        peft_model.peft_config["default"].base_model_name_or_path = base_model_name or str(model_path)
        out_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(str(out_dir), safe_serialization=True)
        (out_dir / "README.md").unlink(missing_ok=True)  # peft's model card template; the manifest is the card
        return TrainResult(
            train_loss=train_curve,
            validation_loss=val_curve,
            steps=int(trainer.state.global_step),
            epochs=float(trainer.state.epoch or 0.0),
            seconds=seconds,
            device=device if device == "cpu" else f"cuda ({torch.cuda.get_device_name(0)})",
            precision=precision,
            planned_steps=total,
            log_every=log_every,
            eval_every=eval_every,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _prompt_completion(record: dict) -> dict:
    messages = record["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def _check_target_modules(model, targets: Sequence[str]) -> None:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise FinetuneError(
            f"finetune.lora.target_modules {missing} are not modules of the base model; its linear layers are: "
            f"{', '.join(linear)}"
        )


# ---------------------------------------------------------------------------------------------------------------
# The stage: dataset -> version -> (reuse | train + publish)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneOutput:
    adapter_uri: str
    version: str
    reused: bool
    manifest: AdapterManifest


def _require_llm(cfg: PipelineConfig) -> LLMConfig:
    if cfg.llm is None:
        raise FinetuneError("fine-tuning needs an llm section in the config (the base model)")
    return cfg.llm


def _hyperparameters(cfg: PipelineConfig, precision: str, max_prompt_tokens: int) -> TrainingHyperparameters:
    return TrainingHyperparameters(
        **cfg.finetune.model_dump(exclude={"enabled", "train_path"}),
        precision=precision,
        retrieval=RetrievalSettings(k=cfg.retrieval.k, mode=cfg.retrieval.mode),
        max_prompt_tokens=max_prompt_tokens,
    )


def adapter_version(
    base_digest: str, data_digest: str, hyperparameters: TrainingHyperparameters, code: str | None = None
) -> str:
    """Digest of everything that determines the adapter: base model files, training data, hyperparameters, code."""
    return digest_of(
        {
            "schema": ADAPTER_SCHEMA_VERSION,
            "base_model": base_digest,
            "data": data_digest,
            "hyperparameters": hyperparameters.model_dump(mode="json"),
            "code": code if code is not None else stage_code("finetune").fingerprint,
        }
    )


def finetune(
    cfg: PipelineConfig,
    index_uri: str | Path,
    *,
    retriever: Retriever | None = None,
    execution_id: str | None = None,
) -> FinetuneOutput:
    """Build the SFT data from `finetune.train_path` and the index, then train and publish the adapter (or reuse the
    verified existing version for the same inputs). Artifacts go to `<artifacts.root>/adapters/<version>`."""
    llm = _require_llm(cfg)
    ft = cfg.finetune
    check_lora_rank(ft, llm)
    device = _device(llm.device)
    precision = training_precision(ft, device)
    model_path = resolve_base_model(llm)
    base_digest = model_digest(model_path)
    tokenizer = _load_tokenizer(model_path)
    retriever = retriever or Retriever.load(index_uri)
    dataset = build_sft_dataset(cfg, retriever, tokenizer)
    hyperparameters = _hyperparameters(cfg, precision, dataset.max_prompt_tokens)
    version = adapter_version(base_digest, dataset.digest, hyperparameters)
    artifact_uri = join_uri(cfg.artifacts.root, "adapters", version)
    if uri_exists(join_uri(artifact_uri, ADAPTER_MANIFEST)):
        # Reuse only a verified artifact; a damaged one fails the run and is left for inspection.
        return FinetuneOutput(artifact_uri, version, True, verify_adapter(materialize(artifact_uri)))

    stage = staging_dir(cfg.artifacts.root)
    try:
        result = train_lora(
            model_path, dataset.train, dataset.validation, ft, stage, device=device, base_model_name=llm.model
        )
        atomic_write_json(stage / "pipeline_config.json", config_record(cfg))
        files = {
            name: FileEntry(sha256=digest, bytes=(stage / name).stat().st_size)
            for name, digest in file_checksums(stage, exclude=(ADAPTER_MANIFEST,)).items()
        }
        manifest = AdapterManifest(
            schema_version=ADAPTER_SCHEMA_VERSION,
            version=version,
            created_at=utc_now(),
            base_model=BaseModelSection(model=llm.model, revision=llm.revision, digest=base_digest),
            data=TrainingDataSection(train_path=ft.train_path, digest=dataset.digest, uri=dataset.uri,
                                     **dataset.stats),
            index_version=retriever.version,
            hyperparameters=hyperparameters,
            lora=LoraSection(**ft.lora.model_dump(), max_lora_rank=llm.max_lora_rank),
            training=result.section(),
            files=files,
            libraries=library_versions(*_TRAINING_LIBRARIES),
            lineage=AdapterLineage(git_sha=git_sha(), code_version=stage_code("finetune").digest,
                                   execution_id=execution_id),
        )
        atomic_write_json(stage / ADAPTER_MANIFEST, manifest.model_dump(mode="json"))
        publish_directory(stage, artifact_uri, commit_file=ADAPTER_MANIFEST)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone already when published
    return FinetuneOutput(artifact_uri, version, False, manifest)


