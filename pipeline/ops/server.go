// Package ops is tariff's operations HTTP server: Prometheus metrics at
// /metrics, liveness at /healthz, readiness at /readyz, and a dashboard
// for people (prices with markup, recent price changes and their rollout,
// pipeline health, customers) over the admin API (/v1/..., admin.go).
//
// /metrics, /healthz and /readyz are open, as scrapers and orchestrators
// expect. The admin API, the dashboard's data, requires the admin token as
// "Authorization: Bearer <token>"; the dashboard's static files carry no
// data and are open. Everything is served from the binary (go:embed): no
// CDN, no build step.
package ops

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/metrics"
)

// Check is one readiness check. Fn must honour ctx, which carries the
// configured check timeout.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Deps are what the server reports on. Every field but Metrics may be nil:
// the endpoint or page that needs it then says it is not available.
type Deps struct {
	Metrics *metrics.Tariff
	// Checks decide /readyz: all must pass.
	Checks []Check
	// Prices is the live price state (*prices.State).
	Prices Prices
	// Stats are the pipeline's counters.
	Stats *pipeline.Stats
	// Lag returns the consumer lag per partition number owned now.
	Lag func() map[int]int64
	// Customers lists balances, plans and pause state (the balance stage).
	Customers Customers
	// Entitlements answers the entitlement check from memory (the balance
	// stage's committed views); nil: the endpoint says it is unavailable.
	Entitlements Entitlements
	// The admin API's parts (see admin.go); each nil makes its endpoints
	// answer 503 with the reason.
	Commands   Commands
	Accounts   Accounts
	RateCards  RateCards
	Deliveries Deliveries
	// Plans is the configured plan catalog PUT /v1/customers/{id}/plan
	// picks from by plan_id.
	Plans   []balance.Plan
	Version string
	Logger  zerolog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Server is the ops HTTP server.
type Server struct {
	cfg     Config
	deps    Deps
	token   string
	log     zerolog.Logger
	started time.Time
	mux     *http.ServeMux
	ln      net.Listener
	srv     *http.Server
	sampler *sampler
	prices  priceCache
	// diffs holds computed version diffs by "prev\x00id": versions are
	// immutable, so an entry never goes stale.
	diffs sync.Map

	checkMu   sync.Mutex
	lastCheck []CheckResult
}

// New builds the server; Listen binds it and Serve runs it. The admin
// token is loaded here (see Config.AdminToken).
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Metrics == nil {
		return nil, errors.New("ops: BUG: no metrics")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	tok, err := cfg.AdminToken.Load()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, deps: deps, token: tok, started: deps.Now(),
		log: deps.Logger.With().Str("component", "ops").Logger(),
	}
	s.sampler = newSampler(deps.Stats, deps.Now)
	if deps.Lag != nil {
		deps.Metrics.ConsumerLag.Collect(func(emit func(float64, ...string)) {
			for p, l := range deps.Lag() {
				emit(float64(l), fmt.Sprint(p))
			}
		})
	}
	s.mux = http.NewServeMux()
	s.mux.Handle("GET /metrics", deps.Metrics.Registry.Handler())
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	for _, rt := range s.v1Routes() {
		s.mux.Handle(rt.pattern, s.admin(rt.h))
	}
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
		s.mux.Handle(m+" /v1/", s.admin(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (GET /v1/openapi.yaml describes the admin API)")
		}))
	}
	s.mux.Handle("GET /", assetHandler())
	return s, nil
}

type route struct {
	pattern string // "METHOD /path"
	h       http.HandlerFunc
}

// v1Routes are the admin API's endpoints, each described in openapi.yaml
// (a test keeps the two in step).
func (s *Server) v1Routes() []route {
	return []route{
		{"GET /v1/customers", s.apiCustomers},
		{"GET /v1/customers/{id}", s.getAccount},
		{"GET /v1/customers/{id}/entitlement", s.entitlement},
		{"GET /v1/customers/{id}/statement", s.getStatement},
		{"POST /v1/customers/{id}/grants", s.postGrant},
		{"DELETE /v1/customers/{id}/grants/{grant}", s.deleteGrant},
		{"PUT /v1/customers/{id}/plan", s.putPlan},
		{"PUT /v1/customers/{id}/thresholds", s.putThresholds},
		{"PUT /v1/customers/{id}/pause", s.putPause},
		{"PUT /v1/customers/{id}/rate-card", s.putRateCardAssignment},
		{"GET /v1/plans", s.getPlans},
		{"GET /v1/rate-cards", s.getRateCards},
		{"PUT /v1/rate-cards/{id}", s.putRateCard},
		{"GET /v1/prices", s.apiPrices},
		{"GET /v1/price-changes", s.apiPriceChanges},
		{"GET /v1/pipeline", s.apiPipeline},
		{"POST /v1/setup", s.postSetup},
		{"GET /v1/webhooks/deliveries", s.getDeliveries},
		{"GET /v1/openapi.yaml", s.getOpenAPI},
	}
}

// Handler returns the server's routes, for tests and for mounting.
func (s *Server) Handler() http.Handler { return securityHeaders(s.mux) }

// Token returns the admin token in force ("" when the dashboard is
// closed). GenerateToken sets one when none is configured.
func (s *Server) Token() string { return s.token }

// GenerateToken makes a random admin token when none is configured and the
// server listens on loopback only, so that `tariff run` with no
// configuration opens a dashboard on this machine without opening one to
// the network. It returns the token made, or "". Call it before Serve:
// the token is not guarded against concurrent requests.
func (s *Server) GenerateToken() string {
	if s.token != "" || !isLoopback(s.cfg.Listen) {
		return ""
	}
	s.token = randomToken()
	return s.token
}

// Listen binds the listen address. An address in use is reported with the
// field that sets it.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ops.listen %s: %w (set ops.listen or TARIFF_OPS_LISTEN to a free address, or %q)", s.cfg.Listen, err, Off)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address (after Listen).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until ctx ends, then shuts down, giving requests
// in flight up to 5 seconds. It samples the pipeline counters for the
// dashboard's throughput meanwhile.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.background(bg) }()
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info().Str("addr", s.Addr()).Bool("dashboard", s.token != "").Msg("ops server listening: /metrics /healthz /readyz /")
	var err error
	select {
	case <-ctx.Done():
		t := time.Now()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = s.srv.Shutdown(sctx)
		cancel()
		s.log.Debug().Dur("took", time.Since(t)).Msg("ops server stopped")
	case err = <-errc:
	}
	stopBG()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// background samples the counters every 5 seconds and runs the readiness
// checks every 15, so /metrics (tariff_check_up) and the dashboard show
// recent results without running checks per scrape.
func (s *Server) background(ctx context.Context) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	s.runChecks(ctx)
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.sampler.sample()
			if n%3 == 0 {
				s.runChecks(ctx)
			}
		}
	}
}

// --- health ---

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"status":         "alive",
		"version":        s.deps.Version,
		"started_at":     s.started.UTC(),
		"uptime_seconds": int64(s.deps.Now().Sub(s.started).Seconds()),
	})
}

// CheckResult is one readiness check's outcome.
type CheckResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	TookMS int64  `json:"took_ms"`
}

// Ready runs every check concurrently, each bounded by the check timeout,
// and reports whether all passed.
func (s *Server) Ready(ctx context.Context) (bool, []CheckResult) {
	res := make([]CheckResult, len(s.deps.Checks))
	var wg sync.WaitGroup
	for i, c := range s.deps.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
			defer cancel()
			t := time.Now()
			err := runCheck(cctx, c.Fn)
			res[i] = CheckResult{Name: c.Name, OK: err == nil, TookMS: time.Since(t).Milliseconds()}
			if err != nil {
				res[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	ok := true
	for _, r := range res {
		ok = ok && r.OK
		v := 0.0
		if r.OK {
			v = 1
		}
		s.deps.Metrics.CheckUp.With(r.Name).Set(v)
	}
	s.checkMu.Lock()
	s.lastCheck = res
	s.checkMu.Unlock()
	return ok, res
}

// runCheck runs fn, giving up when ctx ends even if fn does not honour it
// (a stuck dial must not hang /readyz).
func runCheck(ctx context.Context, fn func(context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within the check timeout: %w", ctx.Err())
	}
}

func (s *Server) runChecks(ctx context.Context) {
	if ok, res := s.Ready(ctx); !ok && ctx.Err() == nil {
		for _, r := range res {
			if !r.OK {
				s.log.Warn().Str("check", r.Name).Str("error", r.Error).Msg("readiness check failed")
			}
		}
	}
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ok, res := s.Ready(r.Context())
	status, code := "ready", http.StatusOK
	if !ok {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	failed := []string{}
	for _, c := range res {
		if !c.OK {
			failed = append(failed, c.Name)
		}
	}
	writeJSON(w, code, map[string]any{"status": status, "failed": failed, "checks": res})
}

// --- admin API ---

// admin requires the bearer token. With no token in force the API is
// closed (503), and says how to open it.
func (s *Server) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if s.token == "" {
			writeError(w, http.StatusServiceUnavailable, fmt.Sprintf(
				"the admin API is closed: no admin token is set; set %s (or ops.admin_token) to a random string of at least %d bytes and restart",
				s.cfg.AdminToken, minTokenBytes))
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tariff"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong admin token: send Authorization: Bearer <token>")
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v) // a failed write is the client gone
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// securityHeaders keeps the dashboard to its own files: no inline script,
// no framing, no sniffing.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}
