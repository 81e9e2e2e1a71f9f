# autograd_gpu on an NVIDIA GPU: CUDA 12 devel image (nvcc and headers for the NVRTC-compiled
# kernels), the package with the cuda12 and examples extras, and the digits demo by default.
#
#   docker build -t autograd-gpu .
#   docker run --rm --gpus all -v "$PWD/out:/out" autograd-gpu          # demo; PNG in ./out
#   docker run --rm --gpus all autograd-gpu python examples/digits_cnn.py
#   docker run --rm --gpus all autograd-gpu python -m pytest -q tests    # needs the dev extra
FROM nvidia/cuda:12.6.3-devel-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/autograd_gpu
# dependencies first, so that editing the sources does not reinstall CuPy
COPY pyproject.toml README.md ./
RUN mkdir -p autograd_gpu && touch autograd_gpu/__init__.py \
    && pip install --upgrade pip \
    && pip install ".[cuda12,examples,dev]" \
    && pip uninstall -y autograd_gpu
COPY autograd_gpu ./autograd_gpu
COPY examples ./examples
COPY tests ./tests
RUN pip install --no-deps ".[cuda12,examples]" \
    && python -c "import autograd_gpu as ag; print('autograd_gpu', ag.__version__)"

RUN mkdir -p /out
CMD ["python", "-m", "autograd_gpu.demo", "--out", "/out/loss_curve.png"]
