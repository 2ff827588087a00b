# The CDS Hooks service: slim, non-root, with a health check. Build and run:
#   docker build -t her2-cds .
#   docker run -p 8000:8000 her2-cds serve --host 0.0.0.0 --trusted-issuer 'ISS|JWKS' ...
# compose.yaml runs it with PostgreSQL.
FROM python:3.12-slim AS build
# durable-rules builds a C extension: compilers in the build stage only
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cds ./cds
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --home-dir /srv --shell /usr/sbin/nologin cds
COPY --from=build /install /usr/local
WORKDIR /srv
COPY --chown=root:root rules ./rules
RUN mkdir -p /srv/data && chown cds /srv/data
USER cds
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
ENTRYPOINT ["cds"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--rules", "/srv/rules", "--database-url", "sqlite:////srv/data/cds-hooks.sqlite3"]
