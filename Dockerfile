FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY cli cli
COPY core core
COPY connectors connectors
COPY workers workers
RUN pip install --no-cache-dir '.[fast]' && useradd --system --no-create-home crmsync
USER crmsync
EXPOSE 8000
# docker-compose.yml runs this image as `migrate` (crmsync db upgrade), `api` (this command)
# and `worker` (crmsync worker), with their healthchecks.
CMD ["crmsync", "serve", "--host", "0.0.0.0", "--port", "8000"]
