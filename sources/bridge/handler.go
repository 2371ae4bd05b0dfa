package bridge

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/schemas"
)

// endpoint serves one partner's path.
type endpoint struct {
	cfg      Endpoint
	b        *Bridge
	log      zerolog.Logger
	dec      schemas.Decoder
	tokenSum [sha256.Size]byte // the token's hash: compared in constant time and length
	hmacKey  []byte            // nil: no signature required
	headers  []kafka.Header    // shared by every message; kafka-go only reads them
}

// problem is a refusal: the HTTP status and the JSON body that says what was
// wrong. It never echoes a secret.
type problem struct {
	status int
	// Error is a one-line summary.
	Error string `json:"error"`
	// Record is the 0-based record (array element or NDJSON line) refused.
	Record *int `json:"record,omitempty"`
	// Span is the 0-based span within an OTLP record.
	Span *int `json:"span,omitempty"`
	// Field is the JSON path of the refused field.
	Field string `json:"field,omitempty"`
	// Reason says what was wrong and what was expected.
	Reason string `json:"reason,omitempty"`
	// Decoder names the decoder that refused the record.
	Decoder string `json:"decoder,omitempty"`
}

func intp(i int) *int { return &i }

// accepted is the 200 answer.
type accepted struct {
	// Accepted is how many records the request held; all were validated.
	Accepted int
	// Messages is how many Kafka messages were published and acknowledged:
	// records without billable usage (a failed call without tokens, a
	// latency meter) are not published, and an OTLP record mixing
	// customers becomes one message per customer.
	Messages int
	// Events is how many usage events those messages decode to.
	Events int
	// TestConnection is set for a connection test answered without
	// publishing.
	TestConnection bool
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := e.b
	b.Stats.Requests.Add(1)
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		e.refuse(w, &problem{status: http.StatusMethodNotAllowed, Error: "method " + r.Method + " not allowed: expected POST or PUT"})
		return
	}
	if p := e.authenticate(r); p != nil {
		e.refuse(w, p)
		return
	}
	raw, body, p := e.readBody(r)
	if p != nil {
		e.refuse(w, p)
		return
	}
	if e.hmacKey != nil {
		if p := e.verifySignature(r, raw); p != nil {
			e.refuse(w, p)
			return
		}
	}
	test := strings.EqualFold(strings.TrimSpace(r.Header.Get(headerTestConnection)), "true")
	if test && isEmptyPayload(body) {
		// OpenRouter's "Test Connection" sends an empty OTLP payload: the
		// credentials were checked above, there is nothing to publish.
		e.log.Debug().Msg("connection test")
		b.Stats.Accepted.Add(1)
		e.answer(w, accepted{TestConnection: true})
		return
	}
	msgs, res, p := e.prepare(body)
	if p != nil {
		e.refuse(w, p)
		return
	}
	if len(msgs) > 0 {
		// The publish is not tied to the request's context: a partner that
		// hangs up must not cut a write in half; publish_timeout bounds it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), b.cfg.PublishTimeout)
		err := b.pub.Publish(ctx, msgs)
		cancel()
		if err != nil {
			e.publishFailed(w, err, len(msgs))
			return
		}
	}
	res.TestConnection = test && len(msgs) == 0
	b.Stats.Accepted.Add(1)
	b.Stats.Records.Add(int64(res.Accepted))
	b.Stats.Messages.Add(int64(res.Messages))
	b.Stats.Events.Add(int64(res.Events))
	e.log.Debug().Int("records", res.Accepted).Int("messages", res.Messages).Int("events", res.Events).Msg("accepted")
	e.answer(w, res)
}

// authenticate checks the bearer token.
func (e *endpoint) authenticate(r *http.Request) *problem {
	h := r.Header.Get("Authorization")
	if h == "" {
		return &problem{status: http.StatusUnauthorized, Error: `missing Authorization header: expected "Authorization: Bearer <token>"`}
	}
	scheme, tok, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return &problem{status: http.StatusUnauthorized, Error: `Authorization header: expected the Bearer scheme, "Authorization: Bearer <token>"`}
	}
	// Hashing first makes the comparison constant-time in the length too.
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(sum[:], e.tokenSum[:]) != 1 {
		return &problem{status: http.StatusUnauthorized, Error: "invalid bearer token for this endpoint"}
	}
	return nil
}

// readBody reads the body within max_body_bytes. raw is the body as sent
// (what a signature covers), body the decompressed body.
func (e *endpoint) readBody(r *http.Request) (raw, body []byte, p *problem) {
	limit := e.cfg.MaxBodyBytes
	tooLarge := func() *problem {
		return &problem{status: http.StatusRequestEntityTooLarge,
			Error: fmt.Sprintf("body larger than %d bytes (max_body_bytes): send fewer records per request", limit)}
	}
	if r.ContentLength > limit {
		return nil, nil, tooLarge()
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc != "" && enc != "identity" && enc != "gzip" {
		return nil, nil, &problem{status: http.StatusUnsupportedMediaType, Error: "Content-Encoding " + strconv.Quote(enc) + ": expected gzip or none"}
	}
	size := r.ContentLength
	if size < 0 {
		size = 0
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		return nil, nil, &problem{status: http.StatusBadRequest, Error: "read body: " + err.Error()}
	}
	if int64(buf.Len()) > limit {
		return nil, nil, tooLarge()
	}
	raw = buf.Bytes()
	if enc != "gzip" {
		return raw, raw, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, &problem{status: http.StatusBadRequest, Error: "gzip body: " + err.Error()}
	}
	out := bytes.NewBuffer(make([]byte, 0, 4*len(raw)+bytes.MinRead))
	// The limit applies after decompression too: a small gzip bomb must
	// not become a large allocation.
	if _, err := out.ReadFrom(io.LimitReader(zr, limit+1)); err != nil {
		return nil, nil, &problem{status: http.StatusBadRequest, Error: "gzip body: " + err.Error()}
	}
	if int64(out.Len()) > limit {
		return nil, nil, tooLarge()
	}
	return raw, out.Bytes(), nil
}

// verifySignature checks hex(HMAC-SHA256(secret, timestamp + "." + raw))
// and that the timestamp is within max_skew of the server clock. The
// signature is checked first, so an unsigned caller learns nothing about
// the clock.
func (e *endpoint) verifySignature(r *http.Request, raw []byte) *problem {
	h := e.cfg.HMAC
	unauthorized := func(msg string) *problem { return &problem{status: http.StatusUnauthorized, Error: msg} }
	ts := strings.TrimSpace(r.Header.Get(h.TimestampHeader))
	if ts == "" {
		return unauthorized("missing " + h.TimestampHeader + " header: expected the Unix time in seconds at which the request was signed")
	}
	sig := strings.TrimSpace(r.Header.Get(h.SignatureHeader))
	if sig == "" {
		return unauthorized(`missing ` + h.SignatureHeader + ` header: expected hex(HMAC-SHA256(secret, timestamp + "." + body))`)
	}
	sig = strings.TrimPrefix(sig, "sha256=")
	var got [sha256.Size]byte
	if len(sig) != 2*sha256.Size {
		return unauthorized(fmt.Sprintf("%s: %d characters: expected %d hex digits", h.SignatureHeader, len(sig), 2*sha256.Size))
	}
	if _, err := hex.Decode(got[:], []byte(sig)); err != nil {
		return unauthorized(h.SignatureHeader + ": expected hex digits")
	}
	mac := hmac.New(sha256.New, e.hmacKey)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(raw)
	if !hmac.Equal(mac.Sum(nil), got[:]) {
		return unauthorized(`signature does not match: expected hex(HMAC-SHA256(secret, timestamp + "." + body)) over the body bytes as sent`)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return unauthorized(h.TimestampHeader + ": expected the Unix time in whole seconds")
	}
	now := e.b.now()
	skew := now.Sub(time.Unix(sec, 0))
	switch {
	case skew > h.MaxSkew:
		return unauthorized(fmt.Sprintf("%s: %s older than the server clock, more than the %s allowed: sign each request when it is sent", h.TimestampHeader, skew.Round(time.Second), h.MaxSkew))
	case -skew > h.MaxSkew:
		return unauthorized(fmt.Sprintf("%s: %s ahead of the server clock, more than the %s allowed: check the sender's clock", h.TimestampHeader, (-skew).Round(time.Second), h.MaxSkew))
	}
	return nil
}

// isEmptyPayload reports whether a body is empty or an empty object or
// array: what a connection test sends.
func isEmptyPayload(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return true
	}
	if len(b) < 2 || !(b[0] == '{' && b[len(b)-1] == '}' || b[0] == '[' && b[len(b)-1] == ']') {
		return false
	}
	return len(bytes.TrimSpace(b[1:len(b)-1])) == 0
}

// prepare splits body into records, decodes and validates each, and builds
// one message per record keyed by its customer. Nothing is published: a
// refused record refuses the request.
func (e *endpoint) prepare(body []byte) ([]kafka.Message, accepted, *problem) {
	var res accepted
	recs, err := splitRecords(make([][]byte, 0, 16), body)
	if err != nil {
		var se *splitError
		if errors.As(err, &se) {
			return nil, res, &problem{status: http.StatusBadRequest, Error: "malformed JSON: " + se.Error(),
				Record: intp(se.record), Reason: se.reason + " at offset " + strconv.Itoa(se.offset)}
		}
		return nil, res, &problem{status: http.StatusBadRequest, Error: "malformed JSON: " + err.Error()}
	}
	res.Accepted = len(recs)
	msgs := make([]kafka.Message, 0, len(recs))
	var evs []schemas.UsageEvent
	now := e.b.now()
	for i, rec := range recs {
		evs, err = e.dec.Decode(evs[:0], rec)
		if err != nil {
			return nil, res, e.decodeProblem(i, rec, err)
		}
		for j := range evs {
			if err := evs[j].Validate(now); err != nil {
				return nil, res, e.validateProblem(i, j, len(evs), err)
			}
		}
		if len(evs) == 0 {
			continue // nothing billable: the pipeline would decode it to nothing
		}
		cust := evs[0].CustomerID
		mixed := false
		for j := 1; j < len(evs); j++ {
			if evs[j].CustomerID != cust {
				mixed = true
				break
			}
		}
		if !mixed {
			if p := e.checkSize(i, cust, rec); p != nil {
				return nil, res, p
			}
			msgs = append(msgs, e.message(cust, rec))
			res.Events += len(evs)
			continue
		}
		parts, p := e.splitByCustomer(i, rec, len(evs))
		if p != nil {
			return nil, res, p
		}
		for _, part := range parts {
			if p := e.checkSize(i, part.customer, part.value); p != nil {
				return nil, res, p
			}
			msgs = append(msgs, e.message(part.customer, part.value))
			res.Events += part.events
		}
	}
	res.Messages = len(msgs)
	return msgs, res, nil
}

func (e *endpoint) message(customer string, value []byte) kafka.Message {
	return kafka.Message{Topic: e.cfg.Topic, Key: []byte(customer), Value: value, Headers: e.headers}
}

// messageOverhead over-estimates a message's framing in a record batch
// beyond its key, value and headers (kafka-go counts about 30 bytes).
const messageOverhead = 64

func (e *endpoint) checkSize(i int, customer string, value []byte) *problem {
	n := len(customer) + len(value) + messageOverhead
	for _, h := range e.headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	if n > e.b.cfg.MaxMessageBytes {
		return &problem{status: http.StatusRequestEntityTooLarge, Record: intp(i),
			Error: fmt.Sprintf("record %d is %d bytes: more than the %d a Kafka message may hold (max_message_bytes)", i, len(value), e.b.cfg.MaxMessageBytes)}
	}
	return nil
}

// splitByCustomer splits an OTLP record whose spans belong to several
// customers (see splitOTLP). Any other record that mixes customers is
// refused: no single key is correct for it.
func (e *endpoint) splitByCustomer(i int, rec []byte, events int) ([]otlpPart, *problem) {
	mixedProblem := &problem{status: http.StatusBadRequest, Record: intp(i), Decoder: e.dec.Name(),
		Error:  fmt.Sprintf("record %d holds usage of several customers", i),
		Reason: "several customers in one record: expected one customer per record"}
	if e.cfg.Format != schemas.FormatOpenRouter || !bytes.Contains(rec, []byte(`"resourceSpans"`)) {
		return nil, mixedProblem
	}
	var evs []schemas.UsageEvent
	parts, err := splitOTLP(rec, func(one []byte) (string, int, error) {
		var err error
		if evs, err = e.dec.Decode(evs[:0], one); err != nil {
			return "", 0, err
		}
		for j := 1; j < len(evs); j++ {
			if evs[j].CustomerID != evs[0].CustomerID {
				return "", 0, errors.New("one span decodes to several customers")
			}
		}
		if len(evs) == 0 {
			return "", 0, nil
		}
		return evs[0].CustomerID, len(evs), nil
	})
	if err != nil {
		return nil, &problem{status: http.StatusBadRequest, Record: intp(i), Decoder: e.dec.Name(),
			Error: fmt.Sprintf("record %d: OTLP document mixes customers and cannot be split by customer: %v", i, err), Reason: err.Error()}
	}
	n := 0
	for _, p := range parts {
		n += p.events
	}
	if n != events {
		// Span by span, the decoder must find exactly the events it found
		// in the whole document; anything else would publish a different
		// bill than the one validated.
		e.log.Error().Int("record", i).Int("events", events).Int("split_events", n).Msg("BUG: splitting an OTLP document by customer changed its events")
		return nil, &problem{status: http.StatusInternalServerError,
			Error: fmt.Sprintf("record %d: internal error splitting the OTLP document by customer; nothing was published", i)}
	}
	return parts, nil
}

func (e *endpoint) decodeProblem(i int, rec []byte, err error) *problem {
	p := &problem{status: http.StatusBadRequest, Record: intp(i), Decoder: e.dec.Name()}
	var de *schemas.DecodeError
	if !errors.As(err, &de) {
		p.Reason = err.Error()
		p.Error = fmt.Sprintf("record %d: %v", i, err)
		return p
	}
	p.Field, p.Reason, p.Decoder = de.Field, de.Reason, de.Decoder
	where := "record " + strconv.Itoa(i)
	if e.cfg.Format == schemas.FormatOpenRouter && bytes.Contains(rec, []byte(`"resourceSpans"`)) {
		// An OTLP record's decode error indexes its spans.
		p.Span = intp(de.Index)
		where += ", span " + strconv.Itoa(de.Index)
	}
	if de.Field != "" {
		where += ": " + de.Field
	}
	p.Error = where + ": " + de.Reason
	return p
}

func (e *endpoint) validateProblem(i, j, n int, err error) *problem {
	p := &problem{status: http.StatusBadRequest, Record: intp(i), Decoder: "validate", Reason: err.Error()}
	where := "record " + strconv.Itoa(i)
	if n > 1 {
		where += ", event " + strconv.Itoa(j)
	}
	var ve *schemas.ValidationError
	if errors.As(err, &ve) {
		p.Field, p.Reason = ve.Field, ve.Reason
		where += ": " + ve.Field
		err = errors.New(ve.Reason)
	}
	p.Error = where + ": " + err.Error()
	return p
}

func (e *endpoint) publishFailed(w http.ResponseWriter, err error, n int) {
	b := e.b
	if errors.Is(err, ErrMessageTooLarge) {
		// Resending cannot help: refuse, do not ask for a retry.
		b.Stats.Refused.Add(1)
		b.reqLog.Warn().Str("partner", e.cfg.Name).Err(err).Int("messages", n).Msg("kafka refused a message as too large")
		b.writeProblem(w, &problem{status: http.StatusRequestEntityTooLarge,
			Error: "a record is larger than the Kafka topic accepts: send smaller records; nothing was stored"})
		return
	}
	b.Stats.Unavailable.Add(1)
	b.reqLog.Error().Str("partner", e.cfg.Name).Str("topic", e.cfg.Topic).Err(err).Int("messages", n).
		Msg("kafka did not acknowledge; answered 503")
	w.Header().Set("Retry-After", b.retryAfter)
	// The broker's error may name internal addresses: it goes to the log,
	// not to the partner.
	b.writeProblem(w, &problem{status: http.StatusServiceUnavailable,
		Error: "usage store unavailable: the records were not accepted; retry after " + b.retryAfter + " seconds (resending is safe)"})
}

// refuse answers a 4xx and counts it.
func (e *endpoint) refuse(w http.ResponseWriter, p *problem) {
	b := e.b
	if p.status == http.StatusUnauthorized {
		b.Stats.Unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="tariff"`)
	} else {
		b.Stats.Refused.Add(1)
	}
	lvl := zerolog.WarnLevel
	if p.status >= 500 {
		lvl = zerolog.ErrorLevel
	}
	// Never the body or a header value: they may hold prompts or secrets.
	b.reqLog.WithLevel(lvl).Str("partner", e.cfg.Name).Int("status", p.status).Str("error", p.Error).Msg("request refused")
	b.writeProblem(w, p)
}

func (b *Bridge) writeProblem(w http.ResponseWriter, p *problem) {
	body, err := json.Marshal(p)
	if err != nil {
		body = []byte(`{"error":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.status)
	_, _ = w.Write(append(body, '\n'))
}

func (e *endpoint) answer(w http.ResponseWriter, a accepted) {
	var buf [96]byte
	b := append(buf[:0], `{"accepted":`...)
	b = strconv.AppendInt(b, int64(a.Accepted), 10)
	b = append(b, `,"messages":`...)
	b = strconv.AppendInt(b, int64(a.Messages), 10)
	b = append(b, `,"events":`...)
	b = strconv.AppendInt(b, int64(a.Events), 10)
	if a.TestConnection {
		b = append(b, `,"test_connection":true`...)
	}
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// zerologStdLogger adapts net/http's error log (TLS handshake failures,
// malformed requests from scanners) to a sampled zerolog warning.
func zerologStdLogger(log zerolog.Logger) *stdlog.Logger {
	l := log.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Minute}).With().Str("part", "http").Logger()
	return stdlog.New(httpLogWriter{l}, "", 0)
}

type httpLogWriter struct{ log zerolog.Logger }

func (w httpLogWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
