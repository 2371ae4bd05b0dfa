// Package gateway is tariff's AI gateway: an HTTP server that speaks the
// OpenAI Chat Completions and Responses APIs and the Anthropic Messages API
// to callers, forwards each request to a configured upstream (OpenAI,
// Anthropic, OpenRouter or any OpenAI-compatible server) with the upstream
// key it holds, and records the usage of every response as one gateway
// usage event on Kafka, keyed by customer id.
//
// Per request, in order: identify the customer (a hashed gateway key, or
// the trusted header with the seller's shared secret), read the model,
// route it, ask the Entitler (402 when paused), forward, pass the answer
// through (streams event by event, flushed), take the usage from the
// response or from the stream's usage events, and hand one event to the
// recorder, which publishes it with acks=all or, when Kafka does not take
// it, spools it in Badger and publishes it later.
package gateway

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/schemas"
)

// Gateway is the HTTP server. Build it with New, run it with Run or Serve,
// then Close it.
type Gateway struct {
	cfg    Config
	log    zerolog.Logger
	reqLog zerolog.Logger // sampled: per-request problems must not flood

	keys           *KeyStore
	trusted        bool
	trustedSum     [32]byte
	customerHeader string
	ent            Entitler
	failOpen       bool

	upstreams map[string]*upstream
	router    *router
	client    *http.Client
	dec       schemas.Decoder

	spool *Spool
	rec   *recorder
	stats Stats

	handler  http.Handler
	inflight atomic.Int64
	now      func() time.Time
	pools    pools

	closeOnce sync.Once
	started   atomic.Bool
}

// Option changes how New builds the gateway.
type Option func(*options)

type options struct {
	entitler  Entitler
	transport http.RoundTripper
	now       func() time.Time
}

// WithEntitler replaces the Entitler the configuration describes.
func WithEntitler(e Entitler) Option { return func(o *options) { o.entitler = e } }

// WithTransport replaces the HTTP transport used to call upstreams.
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithClock replaces the clock that stamps usage events.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New validates cfg (after filling defaults), reads the secrets it names,
// loads the key file and opens the spool. pub receives every usage event;
// the caller owns it and closes it after Run returns and Close was called.
func New(cfg Config, pub Publisher, log zerolog.Logger, opts ...Option) (*Gateway, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, errors.New("gateway: BUG: nil publisher")
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	log = log.With().Str("component", "gateway").Logger()
	g := &Gateway{
		cfg:       cfg,
		log:       log,
		reqLog:    log.Sample(&zerolog.BurstSampler{Burst: 20, Period: 10 * time.Second}),
		failOpen:  cfg.Entitlement.OnError == OnErrorAllow,
		upstreams: map[string]*upstream{},
		now:       time.Now,
	}
	if o.now != nil {
		g.now = o.now
	}
	var errs []error
	for i := range cfg.Upstreams {
		u, err := newUpstream(cfg.Upstreams[i], fmt.Sprintf("gateway.upstreams[%d]", i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		g.upstreams[u.cfg.Name] = u
	}
	if t := cfg.Trusted; t != nil {
		sec, err := t.Secret.Load("gateway.trusted_header.secret", minSecretBytes)
		if err != nil {
			errs = append(errs, err)
		}
		g.trusted, g.trustedSum, g.customerHeader = true, HashKey(string(sec)), t.CustomerHeader
	}
	switch {
	case o.entitler != nil:
		g.ent = o.entitler
	case cfg.Entitlement.URL != "":
		e, err := NewHTTPEntitler(cfg.Entitlement)
		if err != nil {
			errs = append(errs, err)
		}
		g.ent = e
	default:
		g.ent = AllowAll{}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	g.router = newRouter(cfg.Routes, g.upstreams, cfg.DefaultUpstream)
	var err error
	if g.dec, err = schemas.DecoderFor(schemas.FormatGateway, schemas.DecodeOptions{}); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if g.keys, err = OpenKeyStore(cfg.Keys.File); err != nil {
		return nil, fmt.Errorf("gateway.keys.file: %w", err)
	}
	if g.keys.Len() == 0 && !g.trusted {
		log.Warn().Str("file", cfg.Keys.File).Msg("no gateway keys yet and no trusted header: every request is refused until `tariff gateway keys add` issues a key")
	}
	rt := o.transport
	if rt == nil {
		rt = newTransport(cfg)
	}
	g.client = &http.Client{
		Transport: rt,
		// Never follow redirects: an upstream redirect would resend the
		// request (and the key) elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if g.spool, err = OpenSpool(cfg.Spool, log); err != nil {
		return nil, err
	}
	if d := g.spool.Depth(); d > 0 {
		log.Warn().Int64("events", d).Msg("spool holds events from an earlier run: publishing them first")
	}
	g.rec = newRecorder(&g.cfg, pub, g.spool, &g.stats, log.With().Str("part", "recorder").Logger())

	mux := http.NewServeMux()
	for a := api(0); a < numAPIs; a++ {
		mux.Handle(apiPaths[a], g.apiHandler(a))
	}
	mux.HandleFunc("/healthz", g.health)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a := apiChat
		if r.Header.Get("anthropic-version") != "" || r.Header.Get("x-api-key") != "" {
			a = apiMessages
		}
		writeRefusal(w, a, &refusal{errNotFound, "no API at " + r.URL.Path + ": expected POST /v1/chat/completions, /v1/responses or /v1/messages"})
	})
	g.handler = mux
	return g, nil
}

func newUpstream(c Upstream, field string) (*upstream, error) {
	u := &upstream{cfg: c, uniqueIDs: *c.UniqueResponseIDs, headers: http.Header{}}
	base := strings.TrimRight(c.BaseURL, "/")
	for _, n := range c.APIs {
		a, _ := parseAPI(n)
		u.apis[a] = true
		u.url[a] = base + apiSuffix[a]
	}
	if c.Key.IsSet() {
		key, err := c.Key.Load(field+".key", 1)
		if err != nil {
			return nil, err
		}
		u.bearer = []string{"Bearer " + string(key)}
		u.apiKey = []string{string(key)}
	}
	for k, v := range c.Headers {
		u.headers.Set(k, v)
	}
	return u, nil
}

func newTransport(cfg Config) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: cfg.UpstreamHeaderTimeout,
		// Identity encoding: a stream must reach the caller as the upstream
		// flushed it, and usage is read from the bytes as they pass.
		DisableCompression: true,
	}
}

// Handler returns the gateway's HTTP handler: the three APIs, /healthz,
// and a 404 in OpenAI's (or, for Anthropic clients, Anthropic's) format.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Stats returns a snapshot of the gateway's counters and histograms.
func (g *Gateway) Stats() StatsSnapshot {
	s := g.stats.snapshot()
	s.SpoolDepth = g.spool.Depth()
	s.QueueDepth = len(g.rec.queue)
	return s
}

// StatsHandler serves Stats as JSON (GET /stats on metrics_listen).
func (g *Gateway) StatsHandler() http.Handler { return statsHandler(g.Stats) }

func (g *Gateway) health(w http.ResponseWriter, r *http.Request) {
	// Liveness only: Kafka being down does not make the gateway unhealthy
	// (it spools), and restarting it would not help.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// Run listens on cfg.Listen and serves until ctx ends: see Serve.
func (g *Gateway) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s (gateway.listen): %w", g.cfg.Listen, err)
	}
	return g.Serve(ctx, l)
}

// Serve serves on l until ctx ends, then stops in order: refuse new
// connections and wait up to ShutdownTimeout for in-flight requests
// (streams included; cut after that), wait for their handlers to record
// their usage, then publish or spool every queued event. It closes l.
// Serve may be called once.
func (g *Gateway) Serve(ctx context.Context, l net.Listener) error {
	if !g.started.CompareAndSwap(false, true) {
		return errors.New("gateway: BUG: Serve called twice")
	}
	go g.rec.run()
	reloadCtx, stopReload := context.WithCancel(context.Background())
	defer stopReload()
	go g.reloadKeys(reloadCtx)

	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: defaultReadHeaderTimeout,
		ReadTimeout:       g.cfg.ReadTimeout,
		// No WriteTimeout: a stream lasts as long as the model generates.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       zerologStdLogger(g.log),
	}
	var metrics *http.Server
	errc := make(chan error, 2)
	if g.cfg.MetricsListen != "" {
		ml, err := net.Listen("tcp", g.cfg.MetricsListen)
		if err != nil {
			l.Close()
			g.rec.close()
			return fmt.Errorf("gateway: listen on %s (gateway.metrics_listen): %w", g.cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/stats", g.StatsHandler())
		metrics = &http.Server{Handler: mux, ReadHeaderTimeout: defaultReadHeaderTimeout}
		go func() {
			if err := metrics.Serve(ml); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("gateway: serve metrics on %s: %w", ml.Addr(), err)
			}
		}()
	}
	tls := g.cfg.TLSCertFile != ""
	served := make(chan error, 1)
	go func() {
		if tls {
			served <- srv.ServeTLS(l, g.cfg.TLSCertFile, g.cfg.TLSKeyFile)
		} else {
			served <- srv.Serve(l)
		}
	}()
	names := make([]string, 0, len(g.upstreams))
	for n := range g.upstreams {
		names = append(names, n)
	}
	g.log.Info().Str("addr", l.Addr().String()).Bool("tls", tls).Strs("upstreams", names).Int("keys", g.keys.Len()).
		Bool("trusted_header", g.trusted).Str("topic", g.cfg.Topic).Msg("gateway listening")

	var runErr error
	select {
	case err := <-served:
		runErr = fmt.Errorf("gateway: serve http on %s: %w", l.Addr(), err)
	case err := <-errc:
		runErr = err
	case <-ctx.Done():
	}
	started := time.Now()
	g.log.Info().Int64("in_flight", g.inflight.Load()).Msg("stopping: refusing new connections, finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	err := srv.Shutdown(sctx)
	cancel()
	if err != nil {
		// Streams still running are cut; their handlers record the usage
		// reported so far (outcome "cancelled").
		g.log.Warn().Int64("in_flight", g.inflight.Load()).Dur("shutdown_timeout", g.cfg.ShutdownTimeout).
			Msg("requests still running after shutdown_timeout: closing their connections")
		_ = srv.Close()
	}
	if runErr == nil {
		<-served // http.ErrServerClosed
	}
	// Shutdown does not wait for handlers whose connections it closed:
	// wait for them, so that every usage event is handed over before the
	// recorder stops.
	for deadline := time.Now().Add(30 * time.Second); g.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := g.inflight.Load(); n > 0 {
		g.log.Error().Int64("in_flight", n).Msg("handlers still running 30s after their connections closed: their usage may be unrecorded")
	}
	g.log.Info().Dur("took", time.Since(started)).Msg("requests finished")
	if metrics != nil {
		_ = metrics.Close()
	}
	t := time.Now()
	g.rec.close()
	g.log.Info().Dur("took", time.Since(t)).Int64("published", g.stats.Published.Load()).
		Int64("spooled", g.stats.Spooled.Load()).Int64("spool_depth", g.spool.Depth()).Msg("usage events handed over")
	return runErr
}

// Close closes the spool. Call it after Serve returned (or instead of
// Serve, if it was never called).
func (g *Gateway) Close() error {
	var err error
	g.closeOnce.Do(func() { err = g.spool.Close() })
	return err
}

func (g *Gateway) reloadKeys(ctx context.Context) {
	t := time.NewTicker(g.cfg.Keys.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := g.keys.Reload()
			switch {
			case err != nil:
				g.reqLog.Error().Err(err).Msg("reload key file: keeping the keys loaded before")
			case changed:
				g.log.Info().Int("keys", g.keys.Len()).Msg("key file reloaded")
			}
		}
	}
}

// zerologStdLogger adapts net/http's error log to a sampled warning.
func zerologStdLogger(log zerolog.Logger) *stdlog.Logger {
	l := log.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Minute}).With().Str("part", "http").Logger()
	return stdlog.New(httpLogWriter{l}, "", 0)
}

type httpLogWriter struct{ log zerolog.Logger }

func (w httpLogWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
