"""Fine-tuning: RAG-aware SFT data, LoRA training (trl + peft) and the versioned adapter artifact.

The re-exports below are lazy (`llmops.exports`): importing this package loads neither torch nor peft.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "lora": ("AdapterManifest", "FinetuneOutput", "finetune", "read_adapter_manifest", "train_lora",
                 "verify_adapter"),
    },
)
