package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tariff-dev/tariff/sources/bridge"
)

func cmdBridge(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bridge", `Run the webhook bridge: an HTTP server that partner platforms (LiteLLM's
generic webhook, OpenRouter Broadcast, your customers' metering code) call
with usage. Each request is authenticated (bearer token, optionally an
HMAC-SHA256 signature), validated record by record with the partner's
decoder, and published to Kafka keyed by customer id; the answer is 200 only
after Kafka acknowledged every record, 4xx (with a JSON body saying what was
wrong) when the request is refused, 503 with Retry-After when Kafka is down.

The configuration file has a "bridge:" section listing the partner endpoints
(path, format, topic, token, ...); see sources/bridge/README.md. Environment
overrides: TARIFF_BRIDGE_LISTEN, TARIFF_KAFKA_BROKERS,
TARIFF_BRIDGE_TLS_CERT_FILE, TARIFF_BRIDGE_TLS_KEY_FILE. Flags override both.
Stop with SIGINT or SIGTERM: requests in flight are answered first.`, "", stderr)
	ff := addFrontDoorFlags(fs, "bridge", bridge.DefaultListen)
	log, err := ff.parse(fs, args, stderr, "it lists the partner endpoints (see sources/bridge/README.md)")
	if err != nil {
		return err
	}
	configPath := ff.config
	cfg, err := bridge.LoadFile(*configPath)
	if err != nil {
		return err
	}
	ff.override(&cfg.Listen, &cfg.Brokers)
	pub := bridge.NewKafkaPublisher(*cfg, log)
	b, err := bridge.New(*cfg, pub, log)
	if err != nil {
		_ = pub.Close()
		return fmt.Errorf("config %s:\n%w", *configPath, err)
	}
	ctx, stop := signalContext(stderr)
	defer stop()
	runErr := b.Run(ctx)
	// Requests are drained: every message the bridge answered 200 for is
	// already acknowledged, so closing the writer loses nothing.
	started := time.Now()
	closeErr := pub.Close()
	log.Info().Str("component", "bridge").Dur("took", time.Since(started)).Msg("kafka writer closed")
	return errors.Join(runErr, closeErr)
}
