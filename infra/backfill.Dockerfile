# The ops jobs' image (infra/modules/district: backfill_job.tf, model_store.tf): the repository and the ops
# dependencies; tools/ holds the model training (tools/linkage) that `dedup model train` runs.
# Build from the repository root: docker build -f infra/backfill.Dockerfile .
FROM python:3.11-slim
WORKDIR /app
# Every requirements file: requirements-dev.txt includes the workbench's and the ops' with -r.
COPY requirements*.txt ./
RUN pip install --no-cache-dir -r requirements.txt -r requirements-dev.txt
COPY shared ./shared
COPY ops ./ops
COPY tools ./tools
USER 65534
ENTRYPOINT []
