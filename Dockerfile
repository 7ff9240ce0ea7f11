# The Clickstream image: worker, generator and dashboard are `clickstream <command>`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY clickstream clickstream
COPY engine engine
COPY streams streams
COPY agents agents
COPY tables tables
COPY serving serving
COPY dashboard dashboard
COPY generator generator
RUN pip install --no-cache-dir .
RUN useradd --create-home clickstream && mkdir /data && chown clickstream /data
USER clickstream
ENV CLICKSTREAM_VAR_DIR=/data
ENTRYPOINT ["clickstream"]
