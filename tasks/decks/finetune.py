"""What the fine-tune stage shows in the Flyte console: the adapter card (hyperparameters, training data,
train/validation loss curve), from the adapter's manifest."""

from __future__ import annotations

from llmops.finetune.manifest import AdapterManifest
from llmops.htmlkit import Html, fragment, kv_table, line_chart_svg, section, table

__all__ = ["finetune_deck"]


def finetune_deck(manifest: AdapterManifest, reused: bool = False) -> Html:
    """Adapter card: what was trained on what, how, and how the loss went."""
    tr, data, hp, lora = manifest.training, manifest.data, manifest.hyperparameters, manifest.lora
    summary = kv_table(
        {
            "adapter version": manifest.version + (" (reused: same inputs as an earlier run)" if reused else ""),
            "created": manifest.created_at,
            "base model": manifest.base_model.model,
            "base model digest": manifest.base_model.digest[:16],
            "index version": manifest.index_version,
            "device / precision": f"{tr.device} / {tr.precision}",
            "steps / epochs": f"{tr.steps} / {tr.epochs:.2f}",
            "training seconds": tr.seconds,
            "loss on": tr.loss_on,
            "initial validation loss": tr.initial_validation_loss,
            "final validation loss": tr.final_validation_loss,
            "final training loss": tr.final_train_loss,
        }
    )
    curves = line_chart_svg(
        {"train": list(tr.train_loss), "validation": list(tr.validation_loss)},
        x_label="optimizer step",
        y_label="loss",
    )
    dataset = kv_table(
        {
            "training file": data.train_path,
            "questions": data.questions,
            "records (train / validation)": f"{data.train} / {data.validation}",
            "follow-ups (trained with their conversation)": data.multi_turn,
            "skipped: no answer / too long": f"{data.skipped_no_answer} / {data.skipped_too_long}",
            "answer found in retrieved contexts": f"{data.answer_in_contexts} of {data.records}",
            "contexts kept / dropped to fit max_length": f"{data.contexts_kept} / {data.contexts_dropped_for_length}",
            "tokens per record (mean / max)": f"{data.mean_tokens} / {data.max_tokens}",
            "data digest": data.digest[:16],
            "data file": data.uri,
        }
    )
    params = hp.model_dump(mode="json", exclude={"lora", "retrieval"})
    params |= {"retrieval k / mode": f"{hp.retrieval.k} / {hp.retrieval.mode}"}
    params |= {
        "LoRA rank / alpha / dropout": f"{lora.r} / {lora.alpha} / {lora.dropout}",
        "LoRA target modules": ", ".join(lora.target_modules),
        "max LoRA rank served (vLLM)": lora.max_lora_rank,
    }
    files = table(["file", "bytes", "sha256"], [[n, f.bytes, f.sha256[:16]] for n, f in sorted(manifest.files.items())])
    return fragment(
        section("Fine-tune", summary),
        section(
            "Loss",
            curves,
            note="Validation loss at step 0 is the base model's. Loss is measured on the answer tokens only.",
        ),
        section(
            "Training data",
            dataset,
            note="Each question's contexts are retrieved from the index and formatted with the shared prompt "
            "template, as in evaluation and serving; the gold answer is the assistant turn.",
        ),
        section("Hyperparameters", kv_table(params)),
        section(
            "Adapter files",
            files,
            note="Versioned by base model, data, hyperparameters and code "
            f"({manifest.lineage.code_version}).",
        ),
    )
