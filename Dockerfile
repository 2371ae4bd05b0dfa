# Builds the tariff binary into a small image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/tariff ./cmd/tariff

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/tariff tariff && mkdir -p /var/lib/tariff && chown tariff /var/lib/tariff
COPY --from=build /out/tariff /usr/local/bin/tariff
USER tariff
WORKDIR /var/lib/tariff
ENTRYPOINT ["/usr/local/bin/tariff"]
CMD ["run"]
