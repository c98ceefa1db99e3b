"""Generation: the client protocol and its two backends (an OpenAI-compatible server such as vLLM, in-process
transformers), opening a client for a run, the vLLM server process, and a tiny random model for offline tests.

The re-exports below are lazy (`llmops.exports`): importing this package loads neither transformers nor openai.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "client": ("Generation", "GenerationClient", "Messages", "StreamDelta"),
        "openai_client": ("OpenAICompatibleClient",),
        "transformers_client": ("TransformersClient",),
        "runtime": ("make_client", "open_client"),
        "vllm_server": ("VLLMServer", "load_lora_adapter", "unload_lora_adapter"),
        "tiny_llm": ("build_tiny_llm", "random_weights_info"),
    },
)
