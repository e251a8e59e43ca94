# molvae on a GPU host: the torch the tests run (its CUDA build from PyPI) + the project.
#   docker build -t molvae .
#   docker volume create molvae-cache        # MOSES data and reference statistics, kept
#   docker run --gpus all --rm -v molvae-cache:/cache -v "$PWD:/work" -w /work molvae \
#       prep moses --out prepared
#   docker run --gpus all --rm -v molvae-cache:/cache -v "$PWD:/work" -w /work molvae \
#       run pipelines/moses.yaml
#   docker run --gpus all --ipc=host --rm -v molvae-cache:/cache -v "$PWD:/work" -w /work \
#       --entrypoint torchrun molvae --nproc_per_node=4 -m molvae.cli train --data prepared ...
# --ipc=host: DDP ranks share tensors through /dev/shm, which Docker caps at 64 MB.
# The MLflow store (mlflow.db, mlartifacts/) is written to the mounted working folder;
# pass -e MLFLOW_TRACKING_URI=http://HOST:5000 to log to a tracking server instead.
# docs/gpu.md says what of the GPU path is tested where.
FROM python:3.12-slim

# the version `make test` installs (Makefile TORCH_VERSION); pyproject's range stays open
ARG TORCH_VERSION=2.13.0

ENV PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    MOLVAE_CACHE=/cache

# RDKit's drawing code links libXrender and libXext
RUN apt-get update && apt-get install -y --no-install-recommends libxrender1 libxext6 \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}"

WORKDIR /opt/molvae
COPY pyproject.toml README.md ./
COPY molvae ./molvae
COPY pipelines ./pipelines
COPY data ./data
# pip keeps the torch installed above: it satisfies pyproject's range
RUN pip install --no-cache-dir . "mlflow==3.17.2" \
    && python -c "import sys, torch; v = torch.__version__.split('+')[0]; \
sys.exit(v != '${TORCH_VERSION}' and f'torch {v} installed, not ${TORCH_VERSION}')"
# The MOSES data wheel, so `prep moses` works on hosts without internet; a new named volume
# on /cache starts as a copy of it and then keeps what molvae computes there.
RUN python -c "import molvae.data.sources as s; print(s.moses_wheel())"

VOLUME ["/work", "/cache"]
WORKDIR /work
ENTRYPOINT ["molvae"]
CMD ["--help"]
