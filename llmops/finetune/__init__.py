"""Fine-tuning: RAG-aware SFT data, LoRA training (trl + peft) and the versioned adapter artifact.

The re-exports below are lazy (`llmops.exports`): importing this package loads neither torch nor peft.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "sft_data": ("SFTDataset", "build_sft_dataset"),
        "stage": ("FinetuneOutput", "finetune"),
        "training": ("TrainResult", "train_lora"),
        "manifest": ("AdapterManifest", "read_adapter_manifest", "verify_adapter"),
    },
)
