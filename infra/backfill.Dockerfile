# The batch backfill job's image (infra/modules/district/backfill_job.tf): the repository and the ops
# dependencies. Build from the repository root: docker build -f infra/backfill.Dockerfile .
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt requirements-dev.txt ./
RUN pip install --no-cache-dir -r requirements.txt -r requirements-dev.txt
COPY shared ./shared
COPY ops ./ops
USER 65534
ENTRYPOINT []
