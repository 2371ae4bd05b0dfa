// Package bridge is tariff's webhook bridge: an HTTP server that partner
// platforms (LiteLLM's generic webhook, OpenRouter Broadcast, a customer's
// own metering code) call with usage, and that publishes every record to
// Kafka, keyed by customer id, before it answers.
//
// Per request, in order: authenticate (bearer token, then an optional
// HMAC-SHA256 signature over timestamp and body), read the body within its
// size limit, split it into records, decode every record with the
// endpoint's schemas decoder to validate it and find its customer, and
// publish one message per record with acks=all. The answer is 200 only
// after Kafka acknowledged every message; a refused record refuses the
// whole request (nothing is published); a Kafka failure answers 503 with
// Retry-After so the partner resends. Resending is safe: the pipeline
// deduplicates by each event's idempotency key.
package bridge

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/schemas"
)

// Kafka headers of every message the bridge publishes.
const (
	HeaderPartner = "tariff.bridge.partner"
	HeaderFormat  = "tariff.bridge.format"
)

// Stats counts what the bridge did since it started. Safe to read at any
// time.
type Stats struct {
	Requests     atomic.Int64 // requests to partner endpoints
	Accepted     atomic.Int64 // requests answered 200
	Records      atomic.Int64 // records accepted
	Messages     atomic.Int64 // Kafka messages published and acknowledged
	Events       atomic.Int64 // usage events in those messages
	Refused      atomic.Int64 // requests answered 4xx other than 401
	Unauthorized atomic.Int64 // requests answered 401
	Unavailable  atomic.Int64 // requests answered 503 (Kafka failed)
}

// Bridge is the HTTP server. Build it with New; run it with Run or Serve.
type Bridge struct {
	cfg       Config
	pub       Publisher
	log       zerolog.Logger
	reqLog    zerolog.Logger // sampled: per-request problems must not flood
	endpoints []*endpoint
	handler   http.Handler
	now       func() time.Time
	// retryAfter is the Retry-After header value, precomputed.
	retryAfter string

	Stats Stats
}

// New validates cfg (after filling defaults), reads the secrets it names
// and builds a decoder per endpoint. pub receives every message; the
// caller owns it and closes it after Run returns.
func New(cfg Config, pub Publisher, log zerolog.Logger) (*Bridge, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, errors.New("bridge: BUG: nil publisher")
	}
	log = log.With().Str("component", "bridge").Logger()
	b := &Bridge{
		cfg:        cfg,
		pub:        pub,
		log:        log,
		reqLog:     log.Sample(&zerolog.BurstSampler{Burst: 20, Period: 10 * time.Second}),
		now:        time.Now,
		retryAfter: fmt.Sprint(int64(cfg.RetryAfter.Round(time.Second) / time.Second)),
	}
	var errs []error
	for i := range cfg.Endpoints {
		ec := cfg.Endpoints[i]
		f := fmt.Sprintf("bridge.endpoints[%d]", i)
		e := &endpoint{
			cfg: ec,
			b:   b,
			log: log.With().Str("partner", ec.Name).Logger(),
			headers: []kafka.Header{
				{Key: HeaderPartner, Value: []byte(ec.Name)},
				{Key: HeaderFormat, Value: []byte(ec.Format)},
			},
		}
		tok, err := ec.Token.Load(f+".token", minSecretBytes)
		if err != nil {
			errs = append(errs, err)
		}
		e.tokenSum = sha256.Sum256(tok)
		if ec.HMAC != nil {
			if e.hmacKey, err = ec.HMAC.Secret.Load(f+".hmac.secret", minSecretBytes); err != nil {
				errs = append(errs, err)
			}
		}
		if e.dec, err = schemas.DecoderFor(ec.Format, ec.decodeOptions()); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
		b.endpoints = append(b.endpoints, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	for _, e := range b.endpoints {
		mux.Handle(e.cfg.Path, e)
		if e.cfg.CustomerFields != nil {
			log.Warn().Str("partner", e.cfg.Name).Strs("customer_fields", e.cfg.CustomerFields).
				Msg("custom customer_fields: the pipeline must decode this topic with the same fields, or messages are keyed by another id than the one billed")
		}
	}
	mux.HandleFunc(healthPath, b.health)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.writeProblem(w, &problem{status: http.StatusNotFound, Error: "no partner endpoint at " + r.URL.Path})
	})
	b.handler = mux
	return b, nil
}

// Handler returns the bridge's HTTP handler: the partner endpoints,
// /healthz, and a JSON 404 for anything else.
func (b *Bridge) Handler() http.Handler { return b.handler }

func (b *Bridge) health(w http.ResponseWriter, r *http.Request) {
	// Liveness only: a Kafka outage must not get the bridge restarted; it
	// answers 503 to partners instead, and they retry.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// Run listens on cfg.Listen and serves until ctx ends, then stops
// gracefully: see Serve.
func (b *Bridge) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("bridge: listen on %s (bridge.listen): %w", b.cfg.Listen, err)
	}
	return b.Serve(ctx, l)
}

// Serve serves on l until ctx ends. It then stops accepting connections,
// waits up to ShutdownTimeout for in-flight requests (each waiting for its
// Kafka acknowledgement) to be answered, and returns nil; it returns an
// error if the server fails or the drain times out. Serve closes l.
func (b *Bridge) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           b.handler,
		ReadHeaderTimeout: defaultReadHeaderTimeout,
		ReadTimeout:       b.cfg.ReadTimeout,
		// The answer is written after Kafka acknowledged: allow for it.
		WriteTimeout:   b.cfg.ReadTimeout + b.cfg.PublishTimeout + 5*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       zerologStdLogger(b.log),
	}
	tls := b.cfg.TLSCertFile != ""
	errc := make(chan error, 1)
	go func() {
		if tls {
			errc <- srv.ServeTLS(l, b.cfg.TLSCertFile, b.cfg.TLSKeyFile)
		} else {
			errc <- srv.Serve(l)
		}
	}()
	paths := make([]string, len(b.endpoints))
	for i, e := range b.endpoints {
		paths[i] = e.cfg.Path
	}
	b.log.Info().Str("addr", l.Addr().String()).Bool("tls", tls).Strs("paths", paths).Msg("bridge listening")
	select {
	case err := <-errc:
		return fmt.Errorf("bridge: serve http on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	started := time.Now()
	b.log.Info().Msg("stopping: refusing new connections, draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), b.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed, now that Shutdown was called
	if err != nil {
		// Requests still waiting for Kafka are cut off; their partners see
		// a broken connection and resend, which deduplication absorbs.
		_ = srv.Close()
		return fmt.Errorf("bridge: drain in-flight requests within %s (bridge.shutdown_timeout): %w", b.cfg.ShutdownTimeout, err)
	}
	b.log.Info().Dur("took", time.Since(started)).Int64("requests", b.Stats.Requests.Load()).
		Int64("accepted", b.Stats.Accepted.Load()).Int64("messages", b.Stats.Messages.Load()).Msg("drained")
	return nil
}
