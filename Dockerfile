# LlamaBoard on an official CUDA PyTorch runtime image.
#
#   docker build -t llamaboard .
#   docker run --gpus all -p 127.0.0.1:7860:7860 -e LLAMABOARD_AUTH=admin:change-me \
#     -v "$PWD/saves:/app/saves" -v "$PWD/data:/app/data" -v llamaboard-cache:/app/cache llamaboard
#
# Inside the container the board listens on 0.0.0.0 (the only way to reach it through a published port), so
# it must be protected: set LLAMABOARD_AUTH=user:password (the board asks for that login), and publish the port
# on 127.0.0.1 unless other machines really need it. Keep real passwords out of this file and out of images:
# pass them at run time (-e, an env file, or compose's environment).

# torch comes with the image; `pip install .` keeps it (the project asks for torch>=2.6 without an upper bound).
ARG BASE_IMAGE=pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1

# The source stays in /opt/llamaboard so examples/ can be run from there.
WORKDIR /opt/llamaboard
COPY . .
RUN pip install .

# A fixed uid so files written to bind-mounted folders belong to a predictable owner on the host. Some bases
# (Ubuntu 24.04's) already have a uid-1000 user; it is replaced.
RUN if id -u 1000 >/dev/null 2>&1; then userdel --remove "$(id -nu 1000)"; fi \
    && useradd --create-home --uid 1000 --shell /bin/bash board \
    && mkdir -p /app/saves /app/data /app/cache \
    && chown -R board:board /app

# Runs in saves/, datasets in data/ (the board's `dataset_dir: data`), the demo model and hub downloads in cache/.
ENV LLAMABOARD_SAVES=/app/saves \
    LLAMABOARD_CACHE=/app/cache \
    HF_HOME=/app/cache/huggingface
WORKDIR /app
USER 1000:1000
VOLUME ["/app/saves", "/app/data", "/app/cache"]

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"]

CMD ["llamafactory-webui", "--host", "0.0.0.0"]
