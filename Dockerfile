# One image for every Scion process; the command picks the part:
#   docker run IMAGE api --host 0.0.0.0 --port 8000
#   docker run IMAGE scheduler
#   docker run --gpus all IMAGE worker --queues gpu,cpu
#   docker run IMAGE db upgrade
# docker-compose.yml runs the whole set.
#
# PyTorch is pinned to TORCH_VERSION (which must satisfy pyproject.toml's torch bound) and comes,
# like every other package, from pip's own configuration: the default index serves the CUDA build
# of torch for Linux x86_64 (its CUDA runtime comes as nvidia-* wheels; the host needs only the
# NVIDIA driver and the NVIDIA Container Toolkit, and a driver recent enough for that CUDA
# release). To build from another index (a mirror, PyTorch's CPU-only or other CUDA builds), pass
# it as pip reads it: --build-arg PIP_INDEX_URL=... (and PIP_EXTRA_INDEX_URL=...).
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
# no defaults: unset, pip uses its own configuration
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# torch first, alone and pinned: the largest layer, rebuilt only when TORCH_* change. The
# constraint keeps every later install from swapping it for another build.
RUN pip install "torch==${TORCH_VERSION}" \
 && echo "torch==${TORCH_VERSION}" > /etc/scion-constraints.txt

# Then the other dependencies, read from pyproject.toml: rebuilt only when it changes.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt -c /etc/scion-constraints.txt \
 && rm /tmp/requirements.txt /tmp/pyproject.toml

# Then Scion itself (a regular, non-editable install; the source is not kept), and the
# example job specs at /opt/scion/examples.
COPY . /tmp/src
RUN pip install --no-deps -c /etc/scion-constraints.txt /tmp/src \
 && mkdir -p /opt/scion \
 && cp -r /tmp/src/examples /opt/scion/examples \
 && rm -rf /tmp/src \
 && pip check \
 && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# Never root. SCION_HOME holds the embedded stack's files, unused when the two URLs are set.
# /artifacts is created owned by that user so a named volume mounted there starts writable.
# Job specs may name files under /data only (SCION_DATA_ROOTS): mount the data there read-only,
# as docker-compose.yml does (`-v HOST_DIR:/data:ro` with docker run).
RUN groupadd --gid 10001 scion \
 && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin scion \
 && install -d -o 10001 -g 10001 /artifacts
USER 10001:10001
WORKDIR /home/scion
ENV SCION_HOME=/home/scion/.scion \
    SCION_DATA_ROOTS=/data

EXPOSE 8000
ENTRYPOINT ["scion"]
CMD ["--help"]
