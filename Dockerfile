# ragkb API and worker image (CPU). Models ship inside Python packages, so the image
# needs no hub access at run time.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml constraints.txt README.md ./
COPY core core
COPY ingest ingest
COPY retrieval retrieval
COPY generation generation
COPY api api
COPY eval eval
COPY migrations migrations
# Imported by unstructured even for fast PDF parsing; its own dependencies would pull CUDA.
RUN pip install --no-cache-dir --no-deps unstructured-inference==1.6.14
RUN pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim
# libmagic: file types are detected from content.
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 ragkb
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 SCARF_NO_ANALYTICS=1 \
    RAGKB_DATA_DIR=/data RAGKB_HOST=0.0.0.0
RUN mkdir -p /data && chown ragkb /data
USER ragkb
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["ragkb", "serve"]
