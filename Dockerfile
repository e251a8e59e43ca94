# molvae on a GPU host: CUDA-enabled PyTorch + the project.
#   docker build -t molvae .
#   docker run --gpus all --rm -v "$PWD:/work" -w /work molvae prep moses --out prepared
#   docker run --gpus all --rm -v "$PWD:/work" -w /work molvae run pipelines/moses.yaml
# The MLflow store (mlflow.db, mlartifacts/) is written to the mounted working folder;
# pass -e MLFLOW_TRACKING_URI=http://HOST:5000 to log to a tracking server instead.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    MOLVAE_CACHE=/cache

WORKDIR /opt/molvae
COPY pyproject.toml README.md ./
COPY molvae ./molvae
COPY pipelines ./pipelines
COPY data ./data
# torch is already in the base image (CUDA build); pip keeps it because it satisfies torch>=2.3.
RUN pip install --no-cache-dir . "mlflow==3.17.2"
# Bake the MOSES data wheel into the image so `prep moses` works on hosts without internet.
RUN python -c "import molvae.data.sources as s; print(s.moses_wheel())"

VOLUME ["/work", "/cache"]
WORKDIR /work
ENTRYPOINT ["molvae"]
CMD ["--help"]
