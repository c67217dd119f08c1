# A stand-in for NVIDIA's TF1 image (nvcr.io/nvidia/tensorflow:*-tf1-py3), which no registry here can give:
# Debian made by debootstrap, a Python 3.7 copied from the host, and PyPI's TensorFlow 1.15.5 (CPU).
# Built by tests/docker_images.py; Dockerfile.train then builds on it as on the real base.
ARG DEBIAN_IMAGE=dstrain-test/debian:bookworm
FROM ${DEBIAN_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# What a Python 3.7 built by pyenv links against.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libffi8 zlib1g libbz2-1.0 liblzma5 libsqlite3-0 \
      libreadline8 libncursesw6 libexpat1 libuuid1 libgdbm6 libnsl2 libtirpc3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY python/ /opt/py37/
ENV PATH=/opt/py37/bin:$PATH LD_LIBRARY_PATH=/opt/py37/lib
RUN --mount=type=secret,id=ca \
    PIP_CERT=/run/secrets/ca python3.7 -m pip install --no-cache-dir --disable-pip-version-check \
      tensorflow==1.15.5 numpy==1.18.5 protobuf==3.20.3
