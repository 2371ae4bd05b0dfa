package gateway

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The benchmark upstream answers at once with fixed bytes (the shape of
// openai_usage.json), so that what is measured is the gateway, not a
// stand-in that formats JSON.
var (
	benchChatAnswer = []byte(`{"id":"chatcmpl-Bx9k2LmQ7rT4vW1yZ3aC5eG8iK0","object":"chat.completion","created":1771718400,"model":"gpt-4o-2024-08-06",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"Here is the summary ...","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":5210,"completion_tokens":1834,"total_tokens":7044,"prompt_tokens_details":{"cached_tokens":4096,"audio_tokens":0},` +
		`"completion_tokens_details":{"reasoning_tokens":1408,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},` +
		`"service_tier":"default","system_fingerprint":null}`)
	benchChunk     = `data: {"id":"chatcmpl-B","object":"chat.completion.chunk","created":1771718400,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"word "},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n"
	benchLastChunk = `data: {"id":"chatcmpl-B","object":"chat.completion.chunk","created":1771718400,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":5210,"completion_tokens":1834,"total_tokens":7044,"prompt_tokens_details":{"cached_tokens":4096},"completion_tokens_details":{"reasoning_tokens":1408}}}` + "\n\ndata: [DONE]\n\n"
	benchRequest   = []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarize the following text in three bullet points: ` +
		strings.Repeat("lorem ipsum dolor sit amet ", 40) + `"}],"temperature":0.2}`)
)

const benchStreamChunks = 20

var benchAnswerLen = strconv.Itoa(len(benchChatAnswer))

func benchUpstreamHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := w.Header()
	if bytes.Contains(body, []byte(`"stream":true`)) {
		h["Content-Type"] = []string{"text/event-stream"}
		rc := http.NewResponseController(w)
		for range benchStreamChunks {
			_, _ = io.WriteString(w, benchChunk)
			_ = rc.Flush()
		}
		_, _ = io.WriteString(w, benchLastChunk)
		return
	}
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{benchAnswerLen}
	_, _ = w.Write(benchChatAnswer)
}

// benchEnv runs a gateway (with a publisher that acknowledges at once) in
// front of the fast upstream, both on loopback.
func benchEnv(b *testing.B, opts ...Option) (g *Gateway, gwURL, upURL, key string) {
	b.Helper()
	up := httptest.NewServer(http.HandlerFunc(benchUpstreamHandler))
	b.Cleanup(up.Close)
	b.Setenv(envOpenAIKey, testOpenAIKey)
	dir := b.TempDir()
	cfg := Config{
		Brokers:   []string{"127.0.0.1:1"},
		Keys:      KeysConfig{File: filepath.Join(dir, "keys")},
		Spool:     SpoolConfig{Dir: filepath.Join(dir, "spool")},
		Upstreams: []Upstream{{Name: "openai", Kind: KindOpenAI, BaseURL: up.URL + "/v1", Key: Secret{Env: envOpenAIKey}}},
		Routes:    []Route{{Prefix: "gpt-", Upstream: "openai"}},
	}
	key, _, err := AddKey(cfg.Keys.File, "acme", testNow)
	if err != nil {
		b.Fatal(err)
	}
	g, err = New(cfg, nopPublisher{}, zerolog.Nop(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, l) }()
	b.Cleanup(func() {
		cancel()
		<-done
		g.Close()
	})
	return g, "http://" + l.Addr().String(), up.URL, key
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, DisableCompression: true}}
}

func doPost(b *testing.B, c *http.Client, url, key string, body []byte) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Authorization"] = []string{"Bearer " + key}
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// reportOverhead reports the gateway's own time per request (handler time
// minus upstream wait, from Stats) and the throughput.
func reportOverhead(b *testing.B, g *Gateway, start time.Time, n int) {
	st := g.Stats().Overhead
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "req/s")
	b.ReportMetric(float64(st.P50)/1e3, "overhead-p50-µs")
	b.ReportMetric(float64(st.P99)/1e3, "overhead-p99-µs")
}

// BenchmarkGatewayThroughput: many concurrent callers through the gateway
// to the fast upstream, all on this machine's cores (callers, gateway and
// upstream compete for them).
func BenchmarkGatewayThroughput(b *testing.B) {
	for _, stream := range []bool{false, true} {
		name := "json"
		body := benchRequest
		if stream {
			name, body = "stream", bytes.Replace(benchRequest, []byte(`{"model"`), []byte(`{"stream":true,"model"`), 1)
		}
		b.Run(name, func(b *testing.B) {
			g, gw, _, key := benchEnv(b)
			c := benchClient()
			doPost(b, c, gw+"/v1/chat/completions", key, body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					doPost(b, c, gw+"/v1/chat/completions", key, body)
				}
			})
			b.StopTimer()
			reportOverhead(b, g, start, b.N)
		})
	}
}

// BenchmarkUpstreamDirect is the baseline: the same callers straight to the
// upstream.
func BenchmarkUpstreamDirect(b *testing.B) {
	_, _, up, _ := benchEnv(b)
	c := benchClient()
	b.SetBytes(int64(len(benchRequest)))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			doPost(b, c, up+"/v1/chat/completions", "x", benchRequest)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkGatewayAddedLatency: one caller at a time, each request timed
// through the gateway and, alternately, straight to the upstream. added-*
// is the difference of the two distributions' percentiles: what a caller
// notices, the extra loopback hop included.
func BenchmarkGatewayAddedLatency(b *testing.B) {
	g, gw, up, key := benchEnv(b)
	c := benchClient()
	for range 200 { // warm connections and pools
		doPost(b, c, gw+"/v1/chat/completions", key, benchRequest)
		doPost(b, c, up+"/v1/chat/completions", key, benchRequest)
	}
	via := make([]time.Duration, 0, b.N)
	direct := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		doPost(b, c, gw+"/v1/chat/completions", key, benchRequest)
		via = append(via, time.Since(t))
		t = time.Now()
		doPost(b, c, up+"/v1/chat/completions", key, benchRequest)
		direct = append(direct, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(via)
	slices.Sort(direct)
	pct := func(s []time.Duration, p float64) float64 {
		return float64(s[min(len(s)-1, int(p*float64(len(s))))]) / 1e3
	}
	b.ReportMetric(pct(via, 0.5)-pct(direct, 0.5), "added-p50-µs")
	b.ReportMetric(pct(via, 0.99)-pct(direct, 0.99), "added-p99-µs")
	st := g.Stats().Overhead
	b.ReportMetric(float64(st.P50)/1e3, "overhead-p50-µs")
	b.ReportMetric(float64(st.P99)/1e3, "overhead-p99-µs")
}

// memTransport answers every upstream request in memory: the handler
// benchmark then measures the gateway's own CPU and allocations alone.
type memTransport struct{}

func (memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(benchChatAnswer)),
		ContentLength: int64(len(benchChatAnswer)),
		Request:       r,
	}, nil
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Flush()                      {}

// BenchmarkGatewayHandler: one request through the handler with the
// upstream in memory: auth, parse, route, entitle, forward, read the
// usage, build and validate the event, queue it.
func BenchmarkGatewayHandler(b *testing.B) {
	g, _, _, key := benchEnv(b, WithTransport(memTransport{}))
	h := g.Handler()
	b.SetBytes(int64(len(benchRequest)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(benchRequest))
		req.Header["Authorization"] = []string{"Bearer " + key}
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}
