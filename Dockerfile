# Production image: one image, several roles (web, ws, worker, trainer, beat) chosen by the command.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VECTORMLOPS_VAR_DIR=/var/lib/vectormlops YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN DEBUG=1 python manage.py collectstatic --noinput \
    && useradd --system --home /var/lib/vectormlops vectormlops \
    && mkdir -p /var/lib/vectormlops && chown vectormlops /var/lib/vectormlops
USER vectormlops
EXPOSE 8000 8001
CMD ["gunicorn", "vectormlops.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4"]
