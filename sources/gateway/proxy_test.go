package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sources/gateway/gatewaytest"
)

// The payloads README's numbers: OpenAI's own example (5,210 prompt with
// 4,096 cached; 1,834 completion with 1,408 reasoning) and the Claude
// Sonnet 4.5 request (1,200 uncached input, 2,000 cache writes, 8,000
// cache reads, 450 output of which 120 thinking).
func payloadUsage(api string, _ int) gatewaytest.Usage {
	if api == gatewaytest.APIMessages {
		return gatewaytest.Usage{Input: 1200, CacheWrite: 2000, CacheRead: 8000, Output: 450, Thinking: 120}
	}
	return gatewaytest.Usage{Prompt: 5210, Cached: 4096, Completion: 1834, Reasoning: 1408}
}

var (
	openAIExpected = quantities(map[schemas.Unit]int64{
		schemas.UnitInput: 1114, schemas.UnitCachedInput: 4096, schemas.UnitOutput: 426, schemas.UnitReasoning: 1408, schemas.UnitRequests: 1,
	})
	anthropicExpected = quantities(map[schemas.Unit]int64{
		schemas.UnitInput: 1200, schemas.UnitCacheWrite5m: 2000, schemas.UnitCachedInput: 8000,
		schemas.UnitOutput: 330, schemas.UnitReasoning: 120, schemas.UnitRequests: 1,
	})
	// A stream's message_delta has no thinking breakdown: all 450 are
	// output (Anthropic prices thinking as output: the same cost).
	anthropicStreamExpected = quantities(map[schemas.Unit]int64{
		schemas.UnitInput: 1200, schemas.UnitCacheWrite5m: 2000, schemas.UnitCachedInput: 8000,
		schemas.UnitOutput: 450, schemas.UnitRequests: 1,
	})
)

const (
	chatBody      = `{"model":"gpt-4o","messages":[{"role":"user","content":"Summarize"}]}`
	responsesBody = `{"model":"gpt-5","input":"Summarize"}`
	messagesBody  = `{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Summarize"}]}`
)

func streamed(body string) string {
	return strings.Replace(body, `{"model"`, `{"stream":true,"model"`, 1)
}

func TestGatewayNonStreamingUsage(t *testing.T) {
	e := newEnv(t, nil)
	e.openai.UsageFor, e.anthropic.UsageFor = payloadUsage, payloadUsage
	cases := []struct {
		path, body, customer, model, provider, api, upstream string
		want                                                 [schemas.NumUnits]int64
	}{
		{"/v1/chat/completions", chatBody, "acme", "gpt-4o-2024-08-06", "openai", "chat_completions", "openai", openAIExpected},
		{"/v1/responses", responsesBody, "globex", "gpt-5-2025-08-07", "openai", "responses", "openai", openAIExpected},
		{"/v1/messages", messagesBody, "acme", "claude-sonnet-4-5-20250929", "anthropic", "messages", "anthropic", anthropicExpected},
	}
	for i, c := range cases {
		status, body := e.call(c.path, c.customer, c.body)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", c.path, status, body)
		}
		var resp struct {
			ID    string          `json:"id"`
			Usage json.RawMessage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.ID == "" || len(resp.Usage) == 0 {
			t.Fatalf("%s: the caller got %q, not the upstream's answer (%v)", c.path, body, err)
		}
		msgs, evs := e.waitEvents(i + 1)
		ev := evs[i]
		if ev.ID != resp.ID || ev.CustomerID != c.customer || ev.Model != c.model || ev.Provider != c.provider || ev.Quantities != c.want {
			t.Errorf("%s: event %s\n got id %s customer %s model %s provider %s quantities %v\nwant id %s customer %s model %s provider %s quantities %v",
				c.path, msgs[i].Value, ev.ID, ev.CustomerID, ev.Model, ev.Provider, ev.Quantities, resp.ID, c.customer, c.model, c.provider, c.want)
		}
		d := dims(ev)
		if d["api"] != c.api || d["upstream"] != c.upstream || d["outcome"] != "ok" || d["key_id"] == "" || !strings.HasPrefix(e.keys[c.customer], "tgw_"+d["key_id"]+"_") {
			t.Errorf("%s: dimensions %v", c.path, d)
		}
		if !ev.Time.Equal(testNow) || msgs[i].Topic != "t.gateway" {
			t.Errorf("%s: time %s topic %s", c.path, ev.Time, msgs[i].Topic)
		}
	}
	// The upstreams got the gateway's keys, never the caller's.
	for _, up := range []*gatewaytest.Upstream{e.openai, e.anthropic} {
		for _, r := range up.Requests() {
			for k, v := range r.Header {
				for _, key := range e.keys {
					if strings.Contains(strings.Join(v, " "), key) {
						t.Fatalf("upstream got the caller's gateway key in header %s", k)
					}
				}
			}
		}
	}
}

// sseEvents reads a stream answer into its events' data (and names).
func sseEvents(t *testing.T, r io.Reader) (names, datas []string) {
	t.Helper()
	sr := newSSEReader(r, 4096)
	for {
		raw, name, data, err := sr.next()
		if len(raw) > 0 && len(data) > 0 {
			names, datas = append(names, string(name)), append(datas, string(data))
		}
		if err == io.EOF {
			return names, datas
		}
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
	}
}

func TestGatewayStreamingUsage(t *testing.T) {
	e := newEnv(t, nil)
	e.openai.UsageFor, e.anthropic.UsageFor = payloadUsage, payloadUsage
	withUsage := strings.Replace(streamed(chatBody), `{"stream":true`, `{"stream":true,"stream_options":{"include_usage":true}`, 1)
	cases := []struct {
		name, path, body string
		want             [schemas.NumUnits]int64
		// callerUsage: the caller must see a usage chunk.
		callerUsage bool
		lastData    string
	}{
		{"chat without include_usage", "/v1/chat/completions", streamed(chatBody), openAIExpected, false, "[DONE]"},
		{"chat with include_usage", "/v1/chat/completions", withUsage, openAIExpected, true, "[DONE]"},
		{"responses", "/v1/responses", streamed(responsesBody), openAIExpected, true, ""},
		{"messages", "/v1/messages", streamed(messagesBody), anthropicStreamExpected, true, `{"type":"message_stop"}`},
	}
	for i, c := range cases {
		resp := e.post(context.Background(), c.path, c.body, "Authorization", "Bearer "+e.keys["acme"])
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%s: status %d, content type %q", c.name, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		_, datas := sseEvents(t, resp.Body)
		resp.Body.Close()
		sawUsage := false
		for _, d := range datas {
			if strings.Contains(d, `"usage":{`) {
				sawUsage = true
			}
		}
		if sawUsage != c.callerUsage {
			t.Errorf("%s: caller saw a usage chunk: %v, want %v", c.name, sawUsage, c.callerUsage)
		}
		if c.lastData != "" && datas[len(datas)-1] != c.lastData {
			t.Errorf("%s: last event %q, want %q", c.name, datas[len(datas)-1], c.lastData)
		}
		_, evs := e.waitEvents(i + 1)
		if evs[i].Quantities != c.want || dims(evs[i])["outcome"] != "ok" {
			t.Errorf("%s: quantities %v outcome %s, want %v ok", c.name, evs[i].Quantities, dims(evs[i])["outcome"], c.want)
		}
	}
	// What reached the upstream: include_usage added only when missing, the
	// rest of the body unchanged.
	reqs := e.openai.Requests()
	if got := string(reqs[0].Body); got != `{"stream":true,"model":"gpt-4o","messages":[{"role":"user","content":"Summarize"}],"stream_options":{"include_usage":true}}` {
		t.Errorf("upstream got %s", got)
	}
	if got := string(reqs[1].Body); got != withUsage {
		t.Errorf("a body that asked for usage itself was changed: %s", got)
	}
}

// TestGatewayStreamPassesEventsThrough proves nothing is buffered: the
// caller reads the first text delta while the upstream holds the rest.
func TestGatewayStreamPassesEventsThrough(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct{ path, body, first string }{
		{"/v1/chat/completions", streamed(chatBody), `"content":"Here"`},
		{"/v1/responses", streamed(responsesBody), `"delta":"Here"`},
		{"/v1/messages", streamed(messagesBody), `"text":"Here"`},
	} {
		hold := make(chan struct{})
		e.openai.Hold, e.anthropic.Hold = hold, hold
		before := len(e.openai.Reports()) + len(e.anthropic.Reports())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp := e.post(ctx, c.path, c.body, "Authorization", "Bearer "+e.keys["acme"])
		br := bufio.NewReader(resp.Body)
		got := false
		for !got {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: the first delta did not arrive while the upstream held the rest: %v", c.path, err)
			}
			got = strings.Contains(line, c.first)
		}
		if n := len(e.openai.Reports()) + len(e.anthropic.Reports()); n != before {
			t.Fatalf("%s: the upstream already finished a stream", c.path)
		}
		close(hold) // now the upstream sends the rest
		rest, err := io.ReadAll(br)
		if err != nil || !strings.Contains(string(rest), "usage") && !strings.Contains(string(rest), "[DONE]") {
			t.Fatalf("%s: rest of stream %q: %v", c.path, rest, err)
		}
		resp.Body.Close()
		cancel()
		e.openai.Hold, e.anthropic.Hold = nil, nil
	}
	e.settle(3)
}

// TestGatewayCancelledStream: a caller who hangs up mid-stream is billed
// for what the provider reported (Anthropic's message_start usage); an
// OpenAI stream reports usage only at its end, so there is none to bill.
func TestGatewayCancelledStream(t *testing.T) {
	e := newEnv(t, nil)
	e.openai.Block, e.anthropic.Block = true, true
	e.anthropic.UsageFor = payloadUsage
	for _, c := range []struct{ path, body, first string }{
		{"/v1/messages", streamed(messagesBody), `"text":"Here"`},
		{"/v1/chat/completions", streamed(chatBody), `"content":"Here"`},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		resp := e.post(ctx, c.path, c.body, "Authorization", "Bearer "+e.keys["acme"])
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", c.path, err)
			}
			if strings.Contains(line, c.first) {
				break
			}
		}
		cancel() // the caller hangs up
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.g.Stats().Cancelled < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_, evs := e.waitEvents(1)
	want := quantities(map[schemas.Unit]int64{
		schemas.UnitInput: 1200, schemas.UnitCacheWrite5m: 2000, schemas.UnitCachedInput: 8000, schemas.UnitOutput: 1, schemas.UnitRequests: 1,
	})
	if evs[0].Quantities != want || dims(evs[0])["outcome"] != "cancelled" {
		t.Errorf("cancelled Anthropic stream recorded %v outcome %s, want %v cancelled", evs[0].Quantities, dims(evs[0])["outcome"], want)
	}
	st := e.g.Stats()
	if st.Cancelled != 2 || st.Unrecorded != 1 || st.Events != 1 {
		t.Errorf("stats: cancelled %d unrecorded %d events %d, want 2, 1, 1", st.Cancelled, st.Unrecorded, st.Events)
	}
	e.settle(1)
}

func TestGatewayUpstreamErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Upstreams = append(c.Upstreams, Upstream{Name: "dead", Kind: KindOpenAICompatible, BaseURL: "http://127.0.0.1:1/v1"})
		c.Routes = append(c.Routes, Route{Model: "dead-model", Upstream: "dead"})
	})
	// The upstream's own error passes through, status and body.
	status, body := e.call("/v1/chat/completions", "acme", `{"model":"fail-500","messages":[]}`)
	if status != http.StatusInternalServerError || !strings.Contains(body, "the stand-in fails as asked") {
		t.Fatalf("upstream error: %d %s", status, body)
	}
	// An unreachable upstream: 502 in the API's format.
	status, body = e.call("/v1/chat/completions", "acme", `{"model":"dead-model","messages":[]}`)
	if status != http.StatusBadGateway || !strings.Contains(body, `"code":"upstream_unavailable"`) {
		t.Fatalf("dead upstream: %d %s", status, body)
	}
	// An unrouted model: 404 in the API's format.
	status, body = e.call("/v1/messages", "acme", `{"model":"gpt-4o","max_tokens":1,"messages":[]}`)
	if status != http.StatusNotFound || !strings.Contains(body, `"type":"not_found_error"`) {
		t.Fatalf("unrouted: %d %s", status, body)
	}
	st := e.g.Stats()
	if st.Unrecorded != 1 || st.UpstreamErrors != 1 || st.RequestsFor("chat_completions", 500) != 1 || st.RequestsFor("chat_completions", 502) != 1 {
		t.Errorf("stats %+v", st)
	}
	e.settle(0)
}

func TestGatewayAuth(t *testing.T) {
	e := newEnv(t, nil)
	check := func(name, path, wantBody string, wantStatus int, headers ...string) {
		t.Helper()
		resp := e.post(context.Background(), path, chatBody, headers...)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus || !strings.Contains(string(b), wantBody) {
			t.Errorf("%s: %d %s, want %d with %s", name, resp.StatusCode, b, wantStatus, wantBody)
		}
	}
	check("no key, OpenAI format", "/v1/chat/completions", `{"error":{"message":"missing API key`, 401)
	check("no key, Anthropic format", "/v1/messages", `{"type":"error","error":{"type":"authentication_error"`, 401)
	check("wrong key", "/v1/chat/completions", `"code":"invalid_api_key"`, 401, "Authorization", "Bearer tgw_00000000_nope")
	check("basic auth", "/v1/chat/completions", `"code":"invalid_api_key"`, 401, "Authorization", "Basic "+e.keys["acme"])
	check("x-api-key", "/v1/chat/completions", `"choices"`, 200, "x-api-key", e.keys["acme"])
	// Without a configured secret the trusted header is ignored: the key's
	// customer pays, whatever the header says.
	check("header without secret", "/v1/chat/completions", `"choices"`, 200, "Authorization", "Bearer "+e.keys["acme"], DefaultCustomerHeader, "globex")
	check("secret not configured", "/v1/chat/completions", `"code":"invalid_api_key"`, 401, "Authorization", "Bearer "+testTrustedSecret, DefaultCustomerHeader, "globex")
	_, evs := e.waitEvents(2)
	for _, ev := range evs {
		if ev.CustomerID != "acme" {
			t.Errorf("billed to %s, want acme", ev.CustomerID)
		}
	}
	if st := e.g.Stats(); st.Unauthorized != 5 {
		t.Errorf("unauthorized %d, want 5", st.Unauthorized)
	}

	// The key file holds hashes only.
	data, err := os.ReadFile(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for c, key := range e.keys {
		sum := HashKey(key)
		if strings.Contains(string(data), key) || strings.Contains(string(data), strings.SplitN(key, "_", 3)[2]) {
			t.Fatalf("the key file holds %s's key", c)
		}
		recs, _ := ReadKeyFile(e.keyFile)
		found := false
		for _, r := range recs {
			found = found || (r.Customer == c && r.Hash == sum)
		}
		if !found {
			t.Fatalf("no SHA-256 of %s's key in the key file", c)
		}
	}
}

func TestGatewayTrustedHeader(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		t.Setenv(envTrusted, testTrustedSecret)
		c.Trusted = &TrustedConfig{Secret: Secret{Env: envTrusted}}
	})
	status, body := e.call("/v1/chat/completions", "", chatBody, "Authorization", "Bearer "+testTrustedSecret, DefaultCustomerHeader, "initech")
	if status != 200 {
		t.Fatalf("trusted: %d %s", status, body)
	}
	// The secret without the header names no one: refused.
	status, body = e.call("/v1/messages", "", messagesBody, "x-api-key", testTrustedSecret)
	if status != 400 || !strings.Contains(body, "X-Tariff-Customer") || !strings.Contains(body, `"type":"invalid_request_error"`) {
		t.Fatalf("trusted without header: %d %s", status, body)
	}
	// An end user with their own key cannot bill someone else.
	status, _ = e.call("/v1/chat/completions", "acme", chatBody, DefaultCustomerHeader, "initech")
	if status != 200 {
		t.Fatal(status)
	}
	_, evs := e.waitEvents(2)
	if evs[0].CustomerID != "initech" || evs[1].CustomerID != "acme" || dims(evs[0])["key_id"] != "" {
		t.Errorf("billed to %s and %s (dims %v), want initech and acme", evs[0].CustomerID, evs[1].CustomerID, dims(evs[0]))
	}
	// The trusted header never reaches the upstream.
	for _, r := range e.openai.Requests() {
		if r.Header.Get(DefaultCustomerHeader) != "" {
			t.Fatal("the trusted header was forwarded upstream")
		}
	}
}

func TestGatewayPaused(t *testing.T) {
	ent := &fakeEntitler{decisions: map[string]Decision{"acme": {Allowed: false, Status: "paused", Reason: "prepaid credit exhausted"}}}
	e := newEnv(t, nil, WithEntitler(ent))
	status, body := e.call("/v1/chat/completions", "acme", chatBody)
	var oa struct {
		Error struct {
			Message, Type, Code string
		}
	}
	if err := json.Unmarshal([]byte(body), &oa); err != nil || status != http.StatusPaymentRequired ||
		oa.Error.Type != "insufficient_quota" || oa.Error.Code != "insufficient_quota" || !strings.Contains(oa.Error.Message, "prepaid credit exhausted") {
		t.Errorf("OpenAI format: %d %s", status, body)
	}
	status, body = e.call("/v1/messages", "acme", messagesBody)
	var an struct {
		Type  string
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal([]byte(body), &an); err != nil || status != http.StatusPaymentRequired ||
		an.Type != "error" || an.Error.Type != "billing_error" || !strings.Contains(an.Error.Message, "paused") {
		t.Errorf("Anthropic format: %d %s", status, body)
	}
	if n := len(e.openai.Requests()) + len(e.anthropic.Requests()); n != 0 {
		t.Fatalf("a paused customer's request reached the upstream (%d)", n)
	}
	// Another customer is unaffected.
	if status, body := e.call("/v1/chat/completions", "globex", chatBody); status != 200 {
		t.Fatalf("globex: %d %s", status, body)
	}
	if st := e.g.Stats(); st.Paused != 2 || st.RequestsFor("messages", 402) != 1 {
		t.Errorf("stats %+v", st)
	}
	e.settle(1)
}

func TestGatewayEntitlementUnavailable(t *testing.T) {
	for _, policy := range []string{OnErrorAllow, OnErrorDeny} {
		ent := &fakeEntitler{err: errors.New("dial tcp: connection refused")}
		e := newEnv(t, func(c *Config) { c.Entitlement.OnError = policy }, WithEntitler(ent))
		status, body := e.call("/v1/chat/completions", "acme", chatBody)
		switch policy {
		case OnErrorAllow:
			if status != 200 {
				t.Errorf("fail open: %d %s", status, body)
			}
			e.settle(1)
		case OnErrorDeny:
			if status != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"entitlement_unavailable"`) {
				t.Errorf("fail closed: %d %s", status, body)
			}
			e.settle(0)
		}
		if st := e.g.Stats(); st.EntitlementErrors != 1 {
			t.Errorf("%s: entitlement errors %d", policy, st.EntitlementErrors)
		}
	}
}

func TestGatewayBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct {
		name, path, body, want string
		status                 int
	}{
		{"not JSON", "/v1/chat/completions", `nope`, "expected a JSON object", 400},
		{"no model", "/v1/chat/completions", `{"messages":[]}`, "missing model", 400},
		{"two models", "/v1/chat/completions", `{"model":"gpt-4o","mod\u0065l":"claude-sonnet-4-5"}`, "duplicate key", 400},
		{"stream not bool", "/v1/messages", `{"model":"claude-sonnet-4-5","stream":"yes"}`, `"type":"invalid_request_error"`, 400},
	} {
		status, body := e.call(c.path, "acme", c.body)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want %d with %s", c.name, status, body, c.status, c.want)
		}
	}
	resp, err := http.Get(e.url + "/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	e.settle(0)
}

// TestGatewayStreamOutlivesReadTimeout: read_timeout bounds reading the
// request, not the answer: a stream that runs longer is not cut.
func TestGatewayStreamOutlivesReadTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReadTimeout = 200 * time.Millisecond })
	hold := make(chan struct{})
	e.anthropic.Hold = hold
	time.AfterFunc(700*time.Millisecond, func() { close(hold) })
	resp := e.post(context.Background(), "/v1/messages", streamed(messagesBody), "Authorization", "Bearer "+e.keys["acme"])
	_, datas := sseEvents(t, resp.Body)
	resp.Body.Close()
	if len(datas) == 0 || datas[len(datas)-1] != `{"type":"message_stop"}` {
		t.Fatalf("stream cut short after read_timeout: %d events, last %q", len(datas), datas[len(datas)-1:])
	}
	_, evs := e.waitEvents(1)
	if dims(evs[0])["outcome"] != "ok" {
		t.Fatalf("outcome %s", dims(evs[0])["outcome"])
	}
}

// TestGatewayRecyclesOnlyClosedBodies: an upstream that answers without
// reading the request leaves the transport holding the body; its buffer
// must not be reused by the next request meanwhile (the race detector
// watches), and later requests still go through.
func TestGatewayRecyclesOnlyClosedBodies(t *testing.T) {
	early := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"message":"refused before reading","type":"invalid_request_error","param":null,"code":null}}`)
	})
	srv := httptestServer(t, early)
	e := newEnv(t, func(c *Config) {
		c.Upstreams = append(c.Upstreams, Upstream{Name: "early", Kind: KindOpenAICompatible, BaseURL: srv + "/v1"})
		c.Routes = append(c.Routes, Route{Prefix: "early-", Upstream: "early"})
	})
	big := `{"model":"early-1","messages":[{"role":"user","content":"` + strings.Repeat("x", 4<<20) + `"}]}`
	for range 5 {
		if status, _ := e.call("/v1/chat/completions", "acme", big); status != http.StatusBadRequest {
			t.Fatalf("status %d", status)
		}
		if status, body := e.call("/v1/chat/completions", "acme", chatBody); status != 200 {
			t.Fatalf("after an early answer: %d %s", status, body)
		}
	}
	if st := e.g.Stats(); st.RequestsFor("chat_completions", 400) != 5 || st.Unrecorded != 5 {
		t.Errorf("stats %+v", st)
	}
}
