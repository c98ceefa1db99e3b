# syntax=docker/dockerfile:1.7
# One image for pipeline tasks and serving. CPU variant (default) or GPU variant:
#   docker build -t flyte-llmops:cpu .
#   docker build --build-arg VARIANT=gpu -t flyte-llmops:gpu .
ARG VARIANT=cpu
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/app/.cache/huggingface RAGAS_DO_NOT_TRACK=true
RUN useradd --create-home --uid 1000 app
WORKDIR /home/app/flyte-llmops

FROM base AS deps-cpu
# CPU torch from PyTorch's CPU index: the PyPI default would pull a multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
RUN mkdir -p llmops tasks workflows eval serving && touch llmops/__init__.py \
    && pip install '.[cpu]' && pip uninstall -y flyte-llmops

FROM base AS deps-gpu
COPY pyproject.toml README.md ./
RUN mkdir -p llmops tasks workflows eval serving && touch llmops/__init__.py \
    && pip install '.[gpu]' && pip uninstall -y flyte-llmops

FROM deps-${VARIANT} AS final
ARG GIT_SHA=unknown
ENV LLMOPS_GIT_SHA=${GIT_SHA}
COPY --chown=app:app . .
RUN pip install --no-deps . && rm -rf build
USER app
