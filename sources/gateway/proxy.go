package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/schemas"
)

// statusClientClosed is recorded (never sent) when the caller went away
// before an answer was written, as nginx does.
const statusClientClosed = 499

// identity is who a request is billed to.
type identity struct {
	customer string
	keyID    string // "" for the trusted header
}

// exchange is one forwarded request: what the handler learned on the way.
type exchange struct {
	api      api
	who      identity
	up       *upstream
	model    string // as requested
	at       time.Time
	injected bool
	status   int
	outcome  string
	u        *usage
}

// pools keeps the per-request buffers that every request would otherwise
// allocate afresh (request body, rewritten body, response body, stream
// reader, usage copies).
type pools struct {
	buf   sync.Pool // *[]byte
	sse   sync.Pool // *sseReader
	usage sync.Pool // *usage
}

// maxPooledBuf: larger buffers are left to the garbage collector rather
// than pinned in the pool.
const maxPooledBuf = 1 << 20

func (p *pools) getBuf() *[]byte {
	if b, ok := p.buf.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 16<<10)
	return &b
}

func (p *pools) putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		*b = (*b)[:0]
		p.buf.Put(b)
	}
}

func (p *pools) getUsage() *usage {
	if u, ok := p.usage.Get().(*usage); ok {
		u.reset()
		return u
	}
	return &usage{}
}

func (p *pools) putUsage(u *usage) {
	if cap(u.raw)+cap(u.final) <= maxPooledBuf {
		p.usage.Put(u)
	}
}

func (g *Gateway) apiHandler(a api) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.inflight.Add(1)
		defer g.inflight.Add(-1)
		g.stats.request(a, g.serveAPI(a, w, r))
	})
}

// serveAPI handles one request and returns the status it answered with.
func (g *Gateway) serveAPI(a api, w http.ResponseWriter, r *http.Request) int {
	start := time.Now()
	if r.Method != http.MethodPost {
		return writeRefusal(w, a, &refusal{errMethod, "method " + r.Method + " not allowed: expected POST"})
	}
	who, ref := g.identify(r)
	if ref != nil {
		if ref.kind == errAuth {
			g.stats.Unauthorized.Add(1)
		}
		return writeRefusal(w, a, ref)
	}
	// The request buffers go back to the pool only once the transport has
	// closed every body it made of them: it may still be writing one after
	// the upstream answered (an early error answer), and a recycled buffer
	// would then be overwritten under it.
	var sent bodyTracker
	bp := g.pools.getBuf()
	defer func() {
		if sent.open.Load() == 0 {
			g.pools.putBuf(bp)
		}
	}()
	body, ref := g.readBody(r, bp)
	if ref != nil {
		return writeRefusal(w, a, ref)
	}
	req, err := parseRequest(body)
	if err != nil {
		return writeRefusal(w, a, &refusal{errBadRequest, err.Error()})
	}
	up := g.router.route(req.model, a)
	if up == nil {
		return writeRefusal(w, a, &refusal{errNotFound, "model " + strconv.Quote(req.model) + ": no upstream serves it on the " + a.String() + " API"})
	}
	if ref := g.entitle(r.Context(), who.customer); ref != nil {
		return writeRefusal(w, a, ref)
	}
	x := exchange{api: a, who: who, up: up, model: req.model, at: g.now()}
	out := body
	if a == apiChat && req.stream && !req.includeUsage {
		// The usage of a Chat Completions stream comes only when asked
		// for: ask, and drop the usage chunk the caller did not ask for.
		ib := g.pools.getBuf()
		defer func() {
			if sent.open.Load() == 0 {
				g.pools.putBuf(ib)
			}
		}()
		*ib = injectIncludeUsage((*ib)[:0], body, &req)
		out, x.injected = *ib, true
	}
	ureq, err := g.upstreamRequest(r, up, a, out, &sent)
	if err != nil {
		g.reqLog.Error().Err(err).Str("upstream", up.cfg.Name).Msg("build upstream request")
		return writeRefusal(w, a, &refusal{errInternal, "internal error building the upstream request"})
	}
	sentAt := time.Now()
	resp, err := g.client.Do(ureq)
	if err != nil {
		return g.upstreamFailed(w, r, a, up, err)
	}
	defer resp.Body.Close()
	ttfb := time.Since(sentAt)
	g.stats.UpstreamLatency.observe(ttfb)

	u := g.pools.getUsage()
	defer g.pools.putUsage(u)
	x.u = u
	x.status = resp.StatusCode
	tb := &timedBody{r: resp.Body}
	if isEventStream(resp.Header) {
		x.outcome = g.relayStream(w, r, &x, resp, tb)
	} else {
		x.outcome = g.relayBody(w, r, &x, resp, tb)
	}
	g.stats.Overhead.observe(time.Since(start) - ttfb - tb.wait)
	if x.outcome == outcomeCancelled {
		g.stats.Cancelled.Add(1)
	}
	g.record(&x)
	return x.status
}

// identify finds the customer: the trusted header when the credential is
// the shared secret, else the customer whose gateway key it is.
func (g *Gateway) identify(r *http.Request) (identity, *refusal) {
	cred := credential(r.Header)
	if cred == "" {
		return identity{}, &refusal{errAuth, `missing API key: send "Authorization: Bearer <gateway key>" or "x-api-key: <gateway key>"`}
	}
	sum := sha256.Sum256([]byte(cred))
	if g.trusted && subtle.ConstantTimeCompare(sum[:], g.trustedSum[:]) == 1 {
		c := r.Header.Get(g.customerHeader)
		if err := ValidCustomerID(c); err != nil {
			return identity{}, &refusal{errBadRequest, "header " + g.customerHeader + ": " + err.Error() + " (required with the trusted secret)"}
		}
		return identity{customer: c}, nil
	}
	rec, ok := g.keys.lookup(&sum)
	if !ok {
		// The key is not echoed: it may be a secret pasted in the wrong place.
		return identity{}, &refusal{errAuth, "invalid API key: expected a tariff gateway key issued to your account"}
	}
	return identity{customer: rec.Customer, keyID: rec.ID}, nil
}

// credential is the caller's key: "Authorization: Bearer <key>" (OpenAI
// SDKs) or "x-api-key: <key>" (Anthropic SDKs).
func credential(h http.Header) string {
	if v := h.Get("Authorization"); v != "" {
		scheme, tok, ok := strings.Cut(v, " ")
		if tok = strings.TrimSpace(tok); ok && strings.EqualFold(scheme, "Bearer") && tok != "" {
			return tok
		}
	}
	return strings.TrimSpace(h.Get("X-Api-Key"))
}

// entitle asks the Entitler. A paused customer is refused with 402; no
// decision (error, timeout) follows entitlement.on_error.
func (g *Gateway) entitle(ctx context.Context, customer string) *refusal {
	d, err := g.ent.Check(ctx, customer)
	if err != nil {
		g.stats.EntitlementErrors.Add(1)
		if g.failOpen {
			g.reqLog.Warn().Err(err).Str("customer", customer).Msg("entitlement check failed: forwarding anyway (entitlement.on_error: allow); usage is still billed")
			return nil
		}
		g.reqLog.Warn().Err(err).Str("customer", customer).Msg("entitlement check failed: refusing (entitlement.on_error: deny)")
		return &refusal{errUnavailable, "the usage entitlement service is unavailable; retry shortly"}
	}
	if !d.Allowed {
		g.stats.Paused.Add(1)
		reason := d.Reason
		if reason == "" {
			reason = "no balance or allowance left"
		}
		return &refusal{errPaused, "customer " + customer + " is paused: " + reason + ". Top up or change plan to continue."}
	}
	return nil
}

// readBody reads the request body into *bp, within max_body_bytes.
func (g *Gateway) readBody(r *http.Request, bp *[]byte) ([]byte, *refusal) {
	limit := g.cfg.MaxBodyBytes
	tooLarge := &refusal{errTooLarge, "request body larger than " + strconv.FormatInt(limit, 10) + " bytes (gateway max_body_bytes)"}
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return nil, &refusal{errBadRequest, "Content-Encoding " + strconv.Quote(enc) + ": expected none"}
	}
	if r.Body == nil {
		return nil, &refusal{errBadRequest, "request body: expected a JSON object"}
	}
	if n := r.ContentLength; n > 0 && int64(cap(*bp)) < n+1 {
		*bp = make([]byte, 0, n+1)
	}
	b, err := readAll(r.Body, (*bp)[:0], limit+1)
	*bp = b
	if err != nil {
		return nil, &refusal{errBadRequest, "read request body: " + err.Error()}
	}
	if int64(len(b)) > limit {
		return nil, tooLarge
	}
	return b, nil
}

// readAll appends r's bytes to b, at most limit of them.
func readAll(r io.Reader, b []byte, limit int64) ([]byte, error) {
	for int64(len(b)) < limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n := min(int64(cap(b)), limit)
		m, err := r.Read(b[len(b):n])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// Header names, canonical.
const (
	hAnthropicVersion = "Anthropic-Version"
	hAnthropicBeta    = "Anthropic-Beta"
	hOpenAIBeta       = "Openai-Beta"
	hAPIKey           = "X-Api-Key"
)

var userAgent = []string{"tariff-gateway"}

// upstreamRequest builds the request to up. Only an allowlist of the
// caller's headers is forwarded: never its credential, the trusted header,
// cookies or hop-by-hop headers.
func (g *Gateway) upstreamRequest(r *http.Request, up *upstream, a api, body []byte, sent *bodyTracker) (*http.Request, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, up.url[a], nil)
	if err != nil {
		return nil, err
	}
	req.Body, req.ContentLength = sent.body(body), int64(len(body))
	// GetBody lets the transport resend on a reused connection that turned
	// out dead (nothing was written yet).
	req.GetBody = func() (io.ReadCloser, error) { return sent.body(body), nil }
	h := req.Header
	if ct := r.Header["Content-Type"]; len(ct) > 0 {
		h["Content-Type"] = ct
	} else {
		h["Content-Type"] = []string{"application/json"}
	}
	if v := r.Header["Accept"]; len(v) > 0 {
		h["Accept"] = v
	}
	h["User-Agent"] = userAgent
	if a == apiMessages {
		if v := r.Header[hAnthropicVersion]; len(v) > 0 {
			h[hAnthropicVersion] = v
		} else {
			h[hAnthropicVersion] = []string{DefaultAnthropicVersion}
		}
		if v := r.Header[hAnthropicBeta]; len(v) > 0 {
			h[hAnthropicBeta] = v
		}
		if up.apiKey != nil {
			h[hAPIKey] = up.apiKey
		}
	} else {
		if v := r.Header[hOpenAIBeta]; len(v) > 0 {
			h[hOpenAIBeta] = v
		}
		if up.bearer != nil {
			h["Authorization"] = up.bearer
		}
	}
	for k, v := range up.headers {
		h[k] = v
	}
	return req, nil
}

// bodyTracker counts the request bodies the transport has not closed yet.
type bodyTracker struct{ open atomic.Int32 }

type trackedBody struct {
	bytes.Reader
	t      *bodyTracker
	closed atomic.Bool
}

func (t *bodyTracker) body(p []byte) io.ReadCloser {
	t.open.Add(1)
	b := &trackedBody{t: t}
	b.Reset(p)
	return b
}

func (b *trackedBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.t.open.Add(-1)
	}
	return nil
}

// upstreamFailed answers a request the upstream never answered.
func (g *Gateway) upstreamFailed(w http.ResponseWriter, r *http.Request, a api, up *upstream, err error) int {
	if r.Context().Err() != nil {
		// The caller went away first; nobody reads an answer.
		g.stats.Cancelled.Add(1)
		return statusClientClosed
	}
	g.stats.UpstreamErrors.Add(1)
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	// The error names the URL, never the key (it is in a header).
	g.reqLog.Warn().Err(err).Str("upstream", up.cfg.Name).Bool("timeout", timeout).Msg("upstream did not answer")
	if timeout {
		return writeRefusal(w, a, &refusal{errTimeout, "upstream " + up.cfg.Name + " did not answer in time"})
	}
	return writeRefusal(w, a, &refusal{errUpstream, "upstream " + up.cfg.Name + " is unreachable"})
}

// isEventStream reports whether the media type is text/event-stream
// (parameters such as charset aside), without allocating.
func isEventStream(h http.Header) bool {
	const mt = "text/event-stream"
	ct := strings.TrimSpace(h.Get("Content-Type"))
	if len(ct) < len(mt) || !strings.EqualFold(ct[:len(mt)], mt) {
		return false
	}
	rest := strings.TrimSpace(ct[len(mt):])
	return rest == "" || rest[0] == ';'
}

// passHeaders are the upstream response headers a caller sees: the content
// type and the provider's request ids and retry hints. Never cookies, the
// upstream account's rate-limit state or organization.
var passHeaders = []string{"Content-Type", "X-Request-Id", "Request-Id", "Openai-Processing-Ms", "Openai-Version", "Retry-After", "Retry-After-Ms"}

func copyHeaders(dst, src http.Header) {
	for _, k := range passHeaders {
		if v := src[k]; len(v) > 0 {
			dst[k] = v
		}
	}
}

// timedBody measures the time spent waiting for the upstream's body.
type timedBody struct {
	r    io.Reader
	wait time.Duration
}

func (t *timedBody) Read(p []byte) (int, error) {
	s := time.Now()
	n, err := t.r.Read(p)
	t.wait += time.Since(s)
	return n, err
}

// relayBody passes a non-streaming answer through. The body is read whole
// first (it is complete at the upstream already; the usage is in it), then
// written with its length, so the caller has the whole answer before the
// usage is recorded.
func (g *Gateway) relayBody(w http.ResponseWriter, r *http.Request, x *exchange, resp *http.Response, tb *timedBody) string {
	rb := g.pools.getBuf()
	defer g.pools.putBuf(rb)
	limit := g.cfg.MaxResponseBytes
	if n := resp.ContentLength; n > 0 && n <= limit && int64(cap(*rb)) < n+1 {
		*rb = make([]byte, 0, n+1)
	}
	b, err := readAll(tb, (*rb)[:0], limit+1)
	*rb = b
	h := w.Header()
	if err != nil {
		if r.Context().Err() != nil {
			x.status = statusClientClosed
			return outcomeCancelled
		}
		g.stats.UpstreamErrors.Add(1)
		g.reqLog.Warn().Err(err).Str("upstream", x.up.cfg.Name).Msg("upstream broke off its answer")
		x.status = writeRefusal(w, x.api, &refusal{errUpstream, "upstream " + x.up.cfg.Name + " broke off its answer"})
		return outcomeUpstreamError
	}
	copyHeaders(h, resp.Header)
	if int64(len(b)) > limit {
		// Too large to hold: pass it through without reading its usage.
		g.log.Error().Str("upstream", x.up.cfg.Name).Str("customer", x.who.customer).Int64("max_response_bytes", limit).
			Msg("upstream answer larger than max_response_bytes: passed through UNBILLED; raise max_response_bytes")
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
		_, _ = io.Copy(w, tb)
		return outcomeOK
	}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(resp.StatusCode)
	_, werr := w.Write(b)
	x.u.fromBody(x.api, b)
	switch {
	case resp.StatusCode >= 400 || x.u.failed:
		return outcomeUpstreamError
	case werr != nil:
		// The upstream finished (and bills) the answer; the caller left
		// while receiving it. Its usage is recorded all the same.
		return outcomeCancelled
	}
	return outcomeOK
}

// sseBufSize is the stream reader's buffer; longer lines are handled too.
const sseBufSize = 16 << 10

// relayStream passes a server-sent-events answer through event by event,
// flushing each, while the tap reads the usage events. It holds one event
// at a time, never the stream.
func (g *Gateway) relayStream(w http.ResponseWriter, r *http.Request, x *exchange, resp *http.Response, tb *timedBody) string {
	h := w.Header()
	copyHeaders(h, resp.Header)
	h["Cache-Control"] = []string{"no-cache"}
	h["X-Accel-Buffering"] = []string{"no"} // nginx in front: do not buffer
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the caller sees the status at once

	sr, ok := g.pools.sse.Get().(*sseReader)
	if ok {
		sr.reset(tb)
	} else {
		sr = newSSEReader(tb, sseBufSize)
	}
	defer func() {
		sr.reset(nil)
		if cap(sr.ev)+cap(sr.data) <= maxPooledBuf {
			g.pools.sse.Put(sr)
		}
	}()
	t := tap{api: x.api, injected: x.injected, u: x.u}
	outcome := outcomeOK
	if resp.StatusCode >= 400 {
		outcome = outcomeUpstreamError
	}
	for {
		raw, name, data, err := sr.next()
		if len(raw) > 0 && !t.observe(name, data) {
			if _, werr := w.Write(raw); werr != nil {
				return outcomeCancelled
			}
			if ferr := rc.Flush(); ferr != nil {
				return outcomeCancelled
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if r.Context().Err() != nil {
				return outcomeCancelled
			}
			g.reqLog.Warn().Err(err).Str("upstream", x.up.cfg.Name).Msg("upstream stream broke off")
			return outcomeUpstreamError
		}
	}
	if x.u.failed {
		return outcomeUpstreamError
	}
	return outcome
}

// messageOverhead over-estimates a Kafka message's framing beyond key and
// value.
const messageOverhead = 64

// record builds the exchange's usage event and hands it to the recorder.
// No usage reported: no event, counted as unrecorded.
func (g *Gateway) record(x *exchange) {
	u := x.u
	if !u.has() {
		g.stats.Unrecorded.Add(1)
		if x.outcome == outcomeOK && x.status < 300 {
			g.reqLog.Warn().Str("upstream", x.up.cfg.Name).Str("model", x.model).Str("customer", x.who.customer).
				Msg("upstream answered without usage: nothing to bill for this response")
		}
		return
	}
	if x.up.cfg.Kind == KindOpenRouter && u.kind != usageAnthropic {
		u.takeCost()
	}
	id := u.id
	if id == "" || !x.up.uniqueIDs {
		id = newEventID()
	}
	model := u.model
	if model == "" {
		model = x.model
	}
	in := eventInput{
		id: id, time: x.at, customer: x.who.customer, provider: x.up.cfg.Provider, model: model,
		api: x.api, upstream: x.up.cfg.Name, outcome: x.outcome, keyID: x.who.keyID, u: u,
	}
	// The value's ownership passes to the recorder: a fresh allocation.
	value := appendEvent(make([]byte, 0, 384+len(u.raw)+len(u.final)), &in)
	var evs [1]schemas.UsageEvent
	if _, err := g.dec.Decode(evs[:0], value); err != nil {
		// Published all the same: the pipeline dead-letters it with this
		// reason, where it is kept, rather than it vanishing here.
		g.stats.InvalidEvents.Add(1)
		g.reqLog.Error().Err(err).Str("upstream", x.up.cfg.Name).Str("event_id", id).Msg("usage event does not decode: the pipeline will dead-letter it")
	}
	g.stats.Events.Add(1)
	m := kafka.Message{Topic: g.cfg.Topic, Key: []byte(x.who.customer), Value: value}
	if len(value)+len(m.Key)+messageOverhead > g.cfg.MaxMessageBytes {
		g.stats.Parked.Add(1)
		g.log.Error().Str("event_id", id).Int("bytes", len(value)).Int("max_message_bytes", g.cfg.MaxMessageBytes).
			Msg("usage event larger than max_message_bytes: parked in the spool for an operator")
		if err := g.spool.park([]kafka.Message{m}); err != nil {
			g.stats.Lost.Add(1)
			g.log.Error().Err(err).Bytes("event", value).Msg("usage event could not be parked; it is only in this log line")
		}
		return
	}
	g.rec.record(m)
}
