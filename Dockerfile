# One image for the web server and both kinds of worker.
#   docker build -t facecurate .                                     (CPU: web, CPU worker)
#   docker build -t facecurate-gpu --build-arg FAISS=faiss-gpu-cu12 .  (GPU worker; torch from PyPI is a CUDA build)
FROM python:3.11-slim-bookworm

ARG FAISS=faiss-cpu==1.15.1
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FACECURATE_MEDIA_ROOT=/data/media FACECURATE_ARTIFACT_ROOT=/data/artifacts \
    FACECURATE_IMPORT_ROOT=/data/import

RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN grep -v '^faiss-cpu' requirements.txt > /tmp/req.txt \
    && pip install --no-cache-dir -r /tmp/req.txt "$FAISS"
COPY . .
RUN FACECURATE_SECRET_KEY=build python manage.py collectstatic --noinput

EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "facecurate.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
