"""LoRA training with trl's SFTTrainer and peft: precision and device choice, rank checks, the loss on the answer.

Records are given to trl as prompt/completion pairs, so the loss covers the assistant turn with any chat template.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from llmops.config import FinetuneConfig, LLMConfig
from llmops.errors import FinetuneError
from llmops.finetune.sft_data import load_tokenizer
from llmops.finetune.manifest import TrainingSection


TRAINING_LIBRARIES = ("peft", "trl", "accelerate", "bitsandbytes", "datasets")



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


def training_device(requested: str) -> str:
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
    device = training_device(device)
    precision = training_precision(ft, device)
    tokenizer = load_tokenizer(model_path)
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


