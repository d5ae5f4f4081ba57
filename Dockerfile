FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY core core
COPY connectors connectors
COPY workers workers
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["crmsync", "serve", "--host", "0.0.0.0", "--port", "8000"]
