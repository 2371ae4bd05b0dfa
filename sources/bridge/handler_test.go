package bridge

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/schemas"
)

func TestAuth(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, nil)
	body := string(liteLLMPayload(t, 0, ""))
	f := func(name, authz, wantErr string) {
		t.Helper()
		r := post(t, b.Handler(), "/v1/ingest/litellm", body, "Authorization", authz)
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("%s: status %d, want 401: %s", name, r.Status, r.Raw)
		}
		if !strings.Contains(r.Error, wantErr) {
			t.Errorf("%s: error %q, want it to say %q", name, r.Error, wantErr)
		}
		if strings.Contains(r.Raw, testToken) || strings.Contains(r.Raw, "wrong-token") {
			t.Errorf("%s: answer echoes a token: %s", name, r.Raw)
		}
		if r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate header", name)
		}
	}
	f("missing", "", "missing Authorization header")
	f("wrong token", "Bearer wrong-token-0123456789", "invalid bearer token")
	f("token prefix", "Bearer "+testToken[:len(testToken)-1], "invalid bearer token")
	f("basic scheme", "Basic "+testToken, "expected the Bearer scheme")
	// Another endpoint's token does not open this one.
	f("meter token", "Bearer "+testMeterToken, "invalid bearer token")
	if pub.calls != 0 {
		t.Fatalf("published %d times for unauthenticated requests", pub.calls)
	}
	if got := b.Stats.Unauthorized.Load(); got != 5 {
		t.Errorf("Stats.Unauthorized = %d, want 5", got)
	}
	// The right token, any case of the scheme.
	if r := post(t, b.Handler(), "/v1/ingest/litellm", body, "Authorization", "bearer "+testToken); r.Status != http.StatusOK {
		t.Fatalf("good token: status %d: %s", r.Status, r.Raw)
	}
}

func TestHMAC(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, nil)
	body := `[{"customerId":"acme","meterApiName":"llm_text_tokens","meterValue":1200,"meterTimeInMillis":1771718400123,` +
		`"uniqueId":"req-1","dimensions":{"type":"in","model":"claude-sonnet-4-5"}}]`
	f := func(name string, headers []string, wantStatus int, wantErr string) {
		t.Helper()
		r := post(t, b.Handler(), "/v1/ingest/meter", body, headers...)
		if r.Status != wantStatus {
			t.Fatalf("%s: status %d, want %d: %s", name, r.Status, wantStatus, r.Raw)
		}
		if !strings.Contains(r.Error, wantErr) {
			t.Errorf("%s: error %q, want it to say %q", name, r.Error, wantErr)
		}
		if strings.Contains(r.Raw, testHMACSecret) {
			t.Errorf("%s: answer echoes the secret", name)
		}
	}
	good := sign(testHMACSecret, testNow, body)
	f("no signature", nil, 401, "missing X-Tariff-Timestamp header")
	f("no signature header", good[:2], 401, "missing X-Tariff-Signature header")
	f("wrong secret", sign("another-secret-0123456789", testNow, body), 401, "signature does not match")
	f("other body", sign(testHMACSecret, testNow, body+" "), 401, "signature does not match")
	f("not hex", []string{good[0], good[1], good[2], strings.Repeat("zz", 32)}, 401, "expected hex digits")
	f("short", []string{good[0], good[1], good[2], "abcd"}, 401, "expected 64 hex digits")
	// The timestamp is covered by the signature: changing it breaks it.
	f("timestamp changed", []string{good[0], fmt.Sprint(testNow.Unix() + 1), good[2], good[3]}, 401, "signature does not match")
	f("stale", sign(testHMACSecret, testNow.Add(-6*time.Minute), body), 401, "older than the server clock")
	f("future", sign(testHMACSecret, testNow.Add(6*time.Minute), body), 401, "ahead of the server clock")
	if pub.calls != 0 {
		t.Fatalf("published %d times for badly signed requests", pub.calls)
	}
	f("good", good, 200, "")
	f("good, 4m old", sign(testHMACSecret, testNow.Add(-4*time.Minute), body), 200, "")
	prefixed := append([]string(nil), good...)
	prefixed[3] = "sha256=" + prefixed[3]
	f("good, sha256= prefix", prefixed, 200, "")
	// The token is still required with a good signature.
	f("no token", append([]string{"Authorization", ""}, good...), 401, "missing Authorization")
}

func TestBodyTooLarge(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, func(c *Config) { c.Endpoints[0].MaxBodyBytes = 4096 })
	body := string(liteLLMPayload(t, 0, "")) // about 5 KB
	if len(body) <= 4096 {
		t.Fatalf("payload is only %d bytes", len(body))
	}
	r := post(t, b.Handler(), "/v1/ingest/litellm", body)
	if r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Error, "larger than 4096 bytes") {
		t.Fatalf("status %d, error %q: want 413 naming the limit", r.Status, r.Error)
	}
	// Without a Content-Length (chunked), the limit holds while reading.
	req := httptest.NewRequest(http.MethodPost, "/v1/ingest/litellm", struct{ *strings.Reader }{strings.NewReader(body)})
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: status %d, want 413: %s", rec.Code, rec.Body)
	}
	// A small gzip body that inflates past the limit.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("[" + strings.Repeat(" ", 100_000) + "]"))
	zw.Close()
	req = httptest.NewRequest(http.MethodPost, "/v1/ingest/litellm", &gz)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Encoding", "gzip")
	rec = httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("gzip bomb: status %d, want 413: %s", rec.Code, rec.Body)
	}
	if pub.calls != 0 {
		t.Fatal("published an oversized body")
	}
}

func TestGzipBody(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, nil)
	rec := liteLLMPayload(t, 0, "")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(jsonArray(rec)))
	zw.Close()
	r := post(t, b.Handler(), "/v1/ingest/litellm", gz.String(), "Content-Encoding", "gzip")
	if r.Status != 200 || r.Messages != 1 {
		t.Fatalf("status %d: %s", r.Status, r.Raw)
	}
	if got := pub.published()[0].Value; !bytes.Equal(got, rec) {
		t.Fatalf("published value is not the decompressed record")
	}
	if r := post(t, b.Handler(), "/v1/ingest/litellm", "x", "Content-Encoding", "br"); r.Status != http.StatusUnsupportedMediaType {
		t.Fatalf("br: status %d, want 415", r.Status)
	}
}

func TestMalformedJSON(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, nil)
	rec := string(liteLLMPayload(t, 0, ""))
	f := func(name, body string, wantRecord int, want string) {
		t.Helper()
		r := post(t, b.Handler(), "/v1/ingest/litellm", body)
		if r.Status != http.StatusBadRequest {
			t.Fatalf("%s: status %d, want 400: %s", name, r.Status, r.Raw)
		}
		if r.Record == nil || *r.Record != wantRecord {
			t.Errorf("%s: record %v, want %d: %s", name, r.Record, wantRecord, r.Raw)
		}
		if !strings.Contains(r.Error, want) {
			t.Errorf("%s: error %q, want it to say %q", name, r.Error, want)
		}
	}
	f("empty", "", 0, "empty body")
	f("not JSON", "hello", 0, `expected a JSON object, an array of objects, or NDJSON, found 'h'`)
	f("missing comma", "["+rec+" "+rec+"]", 0, "expected ',' or ']' after the record")
	f("unterminated array", "["+rec+","+rec, 1, "expected ',' or ']'")
	f("truncated record", "["+rec+","+rec[:100], 1, "unterminated string")
	f("truncated after a value", "["+rec+`,{"a":1`, 1, "unexpected end of input inside an object")
	f("array of numbers", "[1,2]", 0, "expected an object, found '1'")
	f("trailing garbage", "["+rec+"] x", 0, "after the array")
	f("NDJSON garbage line", rec+"\n"+rec+"\nnot json\n", 2, "expected an object (NDJSON")
	f("mismatched brackets", `{"a":[1,2}`, 0, "unexpected '}'")
	// Well delimited, but not valid inside: the decoder names the problem.
	f("bad inside", "["+rec+`,{"id":"x","startTime":}]`, 1, "record 1")
	if pub.calls != 0 {
		t.Fatal("published a malformed body")
	}
}

func TestRefusedRecord(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, nil)

	// A LiteLLM batch whose second record reports negative output tokens.
	good := liteLLMPayload(t, 1, "")
	bad := bytes.ReplaceAll(liteLLMPayload(t, 2, ""), []byte(`"completion_tokens":450`), []byte(`"completion_tokens":-450`))
	r := post(t, b.Handler(), "/v1/ingest/litellm", jsonArray(good, bad, good))
	if r.Status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", r.Status, r.Raw)
	}
	if r.Record == nil || *r.Record != 1 || !strings.Contains(r.Field, "completion_tokens") || r.Reason == "" || r.Decoder != "litellm" {
		t.Fatalf("want record 1, a completion_tokens field, a reason and the decoder named: %s", r.Raw)
	}
	if !strings.HasPrefix(r.Error, "record 1: ") {
		t.Errorf("error %q does not start with the record", r.Error)
	}

	// A gateway record with a negative count.
	ev := func(id, usage string) string {
		return `{"id":"` + id + `","time":"2026-02-22T00:00:00Z","customer_id":"acme","model":"claude-sonnet-4-5","usage":{` + usage + `}}`
	}
	r = post(t, b.Handler(), "/v1/ingest/gateway", ev("a", `"input":1`)+"\n"+ev("b", `"input":1`)+"\n"+ev("c", `"input":10,"output":-5`)+"\n")
	if r.Status != 400 || r.Record == nil || *r.Record != 2 || r.Field != "usage.output" || !strings.Contains(r.Reason, "negative") {
		t.Fatalf("gateway: want 400 naming record 2, usage.output and a negative count: %s", r.Raw)
	}

	// An event too far in the future: refused by UsageEvent.Validate, as the
	// pipeline would.
	future := `{"id":"f","time":"2026-03-01T00:00:00Z","customer_id":"acme","model":"m","usage":{"input":1}}`
	r = post(t, b.Handler(), "/v1/ingest/gateway", future)
	if r.Status != 400 || r.Field != "time" || r.Decoder != "validate" {
		t.Fatalf("future: want 400 naming the time: %s", r.Raw)
	}
	if pub.calls != 0 {
		t.Fatalf("published %d times although every request had a refused record", pub.calls)
	}
}

func TestSplitKeyedByCustomer(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, nil)
	recs := [][]byte{
		liteLLMPayload(t, 1, "customer-a"),
		liteLLMPayload(t, 2, "customer-b"),
		liteLLMPayload(t, 3, "customer-a"),
	}
	r := post(t, b.Handler(), "/v1/ingest/litellm", "[\n  "+string(bytes.Join(recs, []byte(",\n  ")))+"\n]\n")
	if r.Status != 200 || r.Accepted != 3 || r.Messages != 3 || r.Events != 3 {
		t.Fatalf("status %d: %s", r.Status, r.Raw)
	}
	msgs := pub.published()
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	dec, _ := schemas.DecoderFor("litellm", schemas.DecodeOptions{})
	for i, m := range msgs {
		want := []string{"customer-a", "customer-b", "customer-a"}[i]
		if string(m.Key) != want || m.Topic != "t.litellm" {
			t.Errorf("message %d: key %q topic %q, want %q t.litellm", i, m.Key, m.Topic, want)
		}
		if !bytes.Equal(m.Value, recs[i]) {
			t.Errorf("message %d: value is not the original record bytes", i)
		}
		evs, err := dec.Decode(nil, m.Value)
		if err != nil || len(evs) != 1 || evs[0].CustomerID != string(m.Key) {
			t.Errorf("message %d: decodes to %v, %v: want one event of its key's customer", i, evs, err)
		}
		hdr := map[string]string{}
		for _, h := range m.Headers {
			hdr[h.Key] = string(h.Value)
		}
		if hdr[HeaderPartner] != "litellm" || hdr[HeaderFormat] != "litellm" {
			t.Errorf("message %d: headers %v", i, hdr)
		}
	}

	// NDJSON, and a single object.
	pub.msgs = nil
	r = post(t, b.Handler(), "/v1/ingest/litellm", string(recs[0])+"\n"+string(recs[1])+"\n")
	if r.Status != 200 || r.Messages != 2 || !bytes.Equal(pub.published()[1].Value, recs[1]) {
		t.Fatalf("NDJSON: %s", r.Raw)
	}
	pub.msgs = nil
	r = post(t, b.Handler(), "/v1/ingest/litellm", string(recs[1]))
	if r.Status != 200 || r.Messages != 1 || string(pub.published()[0].Key) != "customer-b" {
		t.Fatalf("single object: %s", r.Raw)
	}

	// Meter records: one message per billable record; the latency meter
	// (no usage) is accepted but not published.
	pub.msgs = nil
	meter := readTestdata(t, "amberflo_meter_record.json")
	r = post(t, b.Handler(), "/v1/ingest/meter", string(meter), sign(testHMACSecret, testNow, string(meter))...)
	if r.Status != 200 || r.Accepted != 7 || r.Messages != 6 || r.Events != 6 {
		t.Fatalf("meter: %s", r.Raw)
	}
	for _, m := range pub.published() {
		if string(m.Key) != "customer-acme-001" || m.Topic != "t.meter" || !bytes.Contains(meter, m.Value) {
			t.Errorf("meter message key %q topic %q", m.Key, m.Topic)
		}
	}
}

// otlpSpan is a generation span of customer user, with its own response id.
func otlpSpan(user, id string) string {
	return `{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"` + id + `","name":"chat",` +
		`"startTimeUnixNano":"1771718400123456000","attributes":[` +
		`{"key":"gen_ai.response.model","value":{"stringValue":"anthropic/claude-sonnet-4.5"}},` +
		`{"key":"gen_ai.response.id","value":{"stringValue":"gen-` + id + `"}},` +
		`{"key":"gen_ai.usage.input_tokens","value":{"intValue":"100"}},` +
		`{"key":"gen_ai.usage.output_tokens","value":{"intValue":"10"}},` +
		`{"key":"user.id","value":{"stringValue":"` + user + `"}},` +
		`{"key":"note","value":{"stringValue":"a <b> & c"}}]}`
}

func TestOTLPByCustomer(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, nil)
	dec, _ := schemas.DecoderFor("openrouter", schemas.DecodeOptions{})

	// One customer: published whole, byte for byte.
	whole := readTestdata(t, "openrouter_broadcast_webhook_otlp.json")
	r := post(t, b.Handler(), "/v1/ingest/openrouter", string(whole))
	if r.Status != 200 || r.Messages != 1 || r.Events != 1 {
		t.Fatalf("broadcast: %s", r.Raw)
	}
	if m := pub.published()[0]; string(m.Key) != "customer-acme-001" || !bytes.Equal(m.Value, whole) {
		t.Fatalf("broadcast: key %q, value changed: %v", m.Key, !bytes.Equal(m.Value, whole))
	}

	// Two customers across two resources and scopes, and a span with no
	// usage: one document per customer, spans kept verbatim.
	pub.msgs = nil
	nonGen := `{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"root","name":"request","attributes":[]}`
	doc := `{"resourceSpans":[` +
		`{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"openrouter"}}]},"scopeSpans":[` +
		`{"scope":{"name":"s1"},"spans":[` + otlpSpan("cust-a", "a1") + `,` + nonGen + `,` + otlpSpan("cust-b", "b1") + `]},` +
		`{"scope":{"name":"s2"},"spans":[` + otlpSpan("cust-a", "a2") + `]}]},` +
		`{"resource":{"attributes":[]},"scopeSpans":[{"scope":{"name":"s3"},"spans":[` + otlpSpan("cust-b", "b2") + `]}]}]}`
	r = post(t, b.Handler(), "/v1/ingest/openrouter", doc)
	if r.Status != 200 || r.Accepted != 1 || r.Messages != 2 || r.Events != 4 {
		t.Fatalf("mixed: %s", r.Raw)
	}
	msgs := pub.published()
	want := map[string][]string{"cust-a": {"a1", "a2"}, "cust-b": {"b1", "b2"}}
	for i, m := range msgs {
		evs, err := dec.Decode(nil, m.Value)
		if err != nil {
			t.Fatalf("message %d does not decode: %v\n%s", i, err, m.Value)
		}
		var ids []string
		for _, ev := range evs {
			if ev.CustomerID != string(m.Key) {
				t.Errorf("message %d keyed %q holds an event of %q", i, m.Key, ev.CustomerID)
			}
			ids = append(ids, strings.TrimPrefix(ev.ID, "openrouter:gen-"))
		}
		if fmt.Sprint(ids) != fmt.Sprint(want[string(m.Key)]) {
			t.Errorf("message %d (%s): events %v, want %v", i, m.Key, ids, want[string(m.Key)])
		}
		for _, id := range want[string(m.Key)] {
			if !bytes.Contains(m.Value, []byte(otlpSpan(string(m.Key), id))) {
				t.Errorf("message %d: span %s is not kept byte for byte", i, id)
			}
		}
		if bytes.Contains(m.Value, []byte(`"root"`)) {
			t.Errorf("message %d: holds the span without usage", i)
		}
	}
	if string(msgs[0].Key) != "cust-a" || !bytes.Contains(msgs[0].Value, []byte(`"name":"s2"`)) || bytes.Contains(msgs[0].Value, []byte(`"name":"s3"`)) {
		t.Errorf("cust-a's document: %s", msgs[0].Value)
	}
}

func TestKafkaFailure(t *testing.T) {
	pub := &fakePublisher{err: errors.New("dial tcp 10.1.2.3:9092: connection refused")}
	b := newTestBridge(t, pub, func(c *Config) { c.RetryAfter = 17 * time.Second })
	r := post(t, b.Handler(), "/v1/ingest/litellm", jsonArray(liteLLMPayload(t, 1, ""), liteLLMPayload(t, 2, "")))
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", r.Status, r.Raw)
	}
	if r.Header.Get("Retry-After") != "17" {
		t.Errorf("Retry-After %q, want 17", r.Header.Get("Retry-After"))
	}
	if r.Accepted != 0 || strings.Contains(r.Raw, `"accepted":`) || strings.Contains(r.Raw, "10.1.2.3") {
		t.Errorf("answer reports records accepted or leaks the broker's address: %s", r.Raw)
	}
	if pub.calls != 1 || b.Stats.Accepted.Load() != 0 || b.Stats.Records.Load() != 0 || b.Stats.Unavailable.Load() != 1 {
		t.Errorf("calls %d, stats accepted %d records %d unavailable %d", pub.calls, b.Stats.Accepted.Load(), b.Stats.Records.Load(), b.Stats.Unavailable.Load())
	}

	// A timeout is a Kafka failure too.
	slow := &fakePublisher{delay: time.Second}
	b = newTestBridge(t, slow, func(c *Config) { c.PublishTimeout = 50 * time.Millisecond })
	if r := post(t, b.Handler(), "/v1/ingest/litellm", string(liteLLMPayload(t, 0, ""))); r.Status != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("timeout: status %d: %s", r.Status, r.Raw)
	}

	// A message the broker will never take is not worth a retry.
	big := &fakePublisher{err: fmt.Errorf("%w: kafka says no", ErrMessageTooLarge)}
	b = newTestBridge(t, big, nil)
	if r := post(t, b.Handler(), "/v1/ingest/litellm", string(liteLLMPayload(t, 0, ""))); r.Status != 413 || r.Header.Get("Retry-After") != "" {
		t.Fatalf("too large: status %d: %s", r.Status, r.Raw)
	}
}

func TestRecordLargerThanAMessage(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, func(c *Config) { c.MaxMessageBytes = 2048 })
	r := post(t, b.Handler(), "/v1/ingest/litellm", jsonArray(liteLLMPayload(t, 0, "")))
	if r.Status != 413 || r.Record == nil || *r.Record != 0 || !strings.Contains(r.Error, "max_message_bytes") {
		t.Fatalf("want 413 naming record 0 and max_message_bytes: %d %s", r.Status, r.Raw)
	}
	if pub.calls != 0 {
		t.Fatal("published")
	}
}

func TestConnectionTest(t *testing.T) {
	pub := &fakePublisher{}
	b := newTestBridge(t, pub, nil)
	for _, body := range []string{"", "{}", `{"resourceSpans":[]}`, "[]"} {
		r := post(t, b.Handler(), "/v1/ingest/openrouter", body, headerTestConnection, "true")
		if r.Status != 200 || !r.Test || r.Messages != 0 {
			t.Fatalf("body %q: status %d: %s", body, r.Status, r.Raw)
		}
	}
	// The test still checks the credentials.
	if r := post(t, b.Handler(), "/v1/ingest/openrouter", "", headerTestConnection, "true", "Authorization", "Bearer nope-nope-nope-nope"); r.Status != 401 {
		t.Fatalf("unauthenticated test: status %d", r.Status)
	}
	// Usage sent with the test header is not dropped: it is published.
	whole := readTestdata(t, "openrouter_broadcast_webhook_otlp.json")
	if r := post(t, b.Handler(), "/v1/ingest/openrouter", string(whole), headerTestConnection, "true"); r.Status != 200 || r.Messages != 1 || r.Test {
		t.Fatalf("test header with usage: %s", r.Raw)
	}
	if pub.calls != 1 {
		t.Fatalf("published %d times, want 1", pub.calls)
	}
}

func TestRoutes(t *testing.T) {
	b := newTestBridge(t, &fakePublisher{}, nil)
	h := b.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"ok"`) {
		t.Fatalf("healthz: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/ingest/litellm", nil))
	if r := decodeReply(t, rec.Code, rec.Header(), rec.Body.Bytes()); r.Status != 405 || rec.Header().Get("Allow") != "POST, PUT" {
		t.Fatalf("GET: %d %s", r.Status, r.Raw)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/ingest/nope", nil))
	if r := decodeReply(t, rec.Code, rec.Header(), rec.Body.Bytes()); r.Status != 404 || !strings.Contains(r.Error, "/v1/ingest/nope") {
		t.Fatalf("unknown path: %d %s", r.Status, r.Raw)
	}
	// OpenRouter may PUT.
	req := httptest.NewRequest(http.MethodPut, "/v1/ingest/openrouter", strings.NewReader(`{"resourceSpans":[]}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("PUT: %d %s", rec.Code, rec.Body)
	}
}

// TestGracefulStop stops the server while a request waits for Kafka: the
// request is answered 200 and Serve returns nil.
func TestGracefulStop(t *testing.T) {
	pub := &fakePublisher{delay: 300 * time.Millisecond}
	b := newTestBridge(t, pub, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx, l) }()
	url := "http://" + l.Addr().String()
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/ingest/litellm", bytes.NewReader(liteLLMPayload(t, 0, "")))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		resp.Body.Close()
		res <- result{code: resp.StatusCode}
	}()
	// Wait until the request is in flight, then stop.
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats.Requests.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if r := <-res; r.err != nil || r.code != 200 {
		t.Fatalf("in-flight request: %d %v, want 200", r.code, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if len(pub.published()) != 1 {
		t.Fatal("the in-flight request's record was not published")
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Fatal("server still accepts connections after stopping")
	}
}
