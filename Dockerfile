# pilotfish, alone: the control plane. Envoy runs from its own image
# (envoyproxy/envoy), as in deploy/ingressgateway.yaml and docker-compose.yaml.
#
#   docker build -t pilotfish:latest .
#   docker run --rm pilotfish:latest serve --help
FROM python:3.11-slim

# No .pyc writes (the root filesystem is read-only in deploy/pilotfish.yaml), logs
# unbuffered so they reach `docker logs` / `kubectl logs` as they happen.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what `pip install .` needs (.dockerignore keeps the rest out of the context).
# The generated protobuf code under pilotfish/api is committed, so no protoc step.
WORKDIR /src
COPY pyproject.toml ./
COPY pilotfish ./pilotfish
# Every dependency ships manylinux wheels for 3.11 (grpcio, google-re2, protobuf), so
# the slim image needs no compiler. The source is removed: the installed package in
# site-packages is what runs.
RUN pip install . && cd / && rm -rf /src

# A fixed numeric uid, so Kubernetes can check runAsNonRoot (deploy/ uses 10001).
RUN groupadd --system --gid 10001 pilotfish \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin pilotfish
USER 10001:10001
WORKDIR /

# 15010: xDS (ADS over gRPC). 15014: /healthz/ready, /metrics, /debug/*.
EXPOSE 15010 15014
ENTRYPOINT ["pilotfish"]
CMD ["--help"]
