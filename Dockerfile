# little-key-value for the clstr harness: ADDR, PEERS and DATA_DIR come from
# the environment; the server listens on 8080 and keeps its state in /app/data.
FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make pkg-config libmicrohttpd-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile VERSION ./
COPY src ./src
RUN make -j"$(nproc)" all

FROM debian:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmicrohttpd12 libcurl4 iptables iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/little-key-value /usr/local/bin/little-key-value
WORKDIR /app
ENV DATA_DIR=/app/data
VOLUME /app/data
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/little-key-value"]
