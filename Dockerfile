# autograd_gpu on an NVIDIA GPU, Linux x86_64.
#
#   docker build -t autograd-gpu .
#   docker run --rm --gpus all -v "$PWD/out:/out" autograd-gpu            # demo; PNG in ./out
#   docker run --rm --gpus all autograd-gpu python examples/digits_cnn.py --out /out/cm.png
#   docker build --target test -t autograd-gpu-test . && docker run --rm --gpus all autograd-gpu-test
#
# One CUDA: the CUDA 12 libraries that CuPy's [ctk] extra installs from PyPI (NVRTC, cuBLAS,
# cuRAND, ...; 12.9 in docker/requirements.txt). The base image is plain Python with no CUDA of
# its own; the host's NVIDIA driver (R525 or newer, for CUDA 12) comes in through the NVIDIA
# Container Toolkit, which the NVIDIA_* variables below ask for.
#
# Stages: build (gcc and Python's headers compile the two C extensions into a wheel, and
# docker/build_wheel.sh refuses a wheel without them), runtime (the default: the virtual
# environment only, no compiler, a non-root user), test (runtime plus pytest and the tests).
# Every Python package is pinned with its hash (docker/*.txt, written by tools/docker_lock.py
# from pyproject.toml); the base image by its full version.

ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# ---- build ---------------------------------------------------------------------------------
FROM base AS build
# Debian's point releases replace these packages, so an exact apt pin would stop building
# within months; the compiler does not reach the runtime stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv && python -m venv /opt/buildenv
WORKDIR /src
# the dependencies first, from the pinned lists alone: editing the sources (or the README)
# rebuilds only the layers below, not CuPy and CUDA's libraries
COPY docker/requirements.txt docker/build-requirements.txt docker/
RUN pip install --no-cache-dir -r docker/requirements.txt \
    && /opt/buildenv/bin/pip install --no-cache-dir -r docker/build-requirements.txt
COPY pyproject.toml setup.py README.md LICENSE ./
COPY autograd_gpu ./autograd_gpu
COPY docker/build_wheel.sh docker/
# (python -I: the check imports the installed wheel, not /src's tree, which has no .so files)
RUN PYTHON=/opt/buildenv/bin/python sh docker/build_wheel.sh /src /wheels \
    && pip install --no-cache-dir --no-deps /wheels/autograd_gpu-*.whl \
    && python -I -c "import autograd_gpu as ag, autograd_gpu._native, autograd_gpu._hostpool; \
print('autograd_gpu', ag.__version__, 'with its compiled extensions')"

# ---- test: docker build --target test -----------------------------------------------------
FROM base AS test
COPY --from=build /opt/venv /opt/venv
COPY docker/requirements-test.txt /tmp/
# the test folder belongs to the user: pytest and hypothesis write their caches there
RUN pip install --no-cache-dir -r /tmp/requirements-test.txt \
    && useradd --create-home --uid 10001 ag \
    && install -d -o 10001 -g 10001 /home/ag/autograd_gpu
WORKDIR /home/ag/autograd_gpu
# what the tests read besides the installed package (README and guide snippets, the examples)
COPY --chown=10001:10001 pyproject.toml README.md LICENSE ./
COPY --chown=10001:10001 docs ./docs
COPY --chown=10001:10001 examples ./examples
COPY --chown=10001:10001 tests ./tests
USER 10001:10001
CMD ["python", "-m", "pytest", "-q", "tests"]

# ---- runtime (the default target) ---------------------------------------------------------
FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 ag && mkdir /out && chown 10001:10001 /out
WORKDIR /home/ag
COPY --chown=10001:10001 examples ./examples
USER 10001:10001
# a host folder mounted at /out receives the PNG; it must be writable by uid 10001, or run with
# --user "$(id -u):$(id -g)"
CMD ["python", "-m", "autograd_gpu.demo", "--out", "/out/loss_curve.png"]
