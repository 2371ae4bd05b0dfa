package bridge

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// benchHandler posts body to path b.N times through the handler, with a
// publisher that acknowledges at once: the cost measured is the bridge's
// own (auth, read, split, decode, validate, build messages, answer).
func benchHandler(b *testing.B, path, token string, body []byte, headers ...string) {
	br := newTestBridge(b, nopPublisher{}, nil)
	h := br.Handler()
	req := httptest.NewRequest(http.MethodPost, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rd := bytes.NewReader(body)
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rd.Reset(body)
		req.Body = readCloser{rd}
		req.ContentLength = int64(len(body))
		w.code = 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

func BenchmarkHandlerLiteLLM(b *testing.B) {
	// A LiteLLM webhook batch of 20 StandardLoggingPayloads (~6 KB each).
	recs := make([][]byte, 20)
	for i := range recs {
		recs[i] = liteLLMPayload(b, i+1, "")
	}
	benchHandler(b, "/v1/ingest/litellm", testToken, []byte(jsonArray(recs...)))
}

func BenchmarkHandlerLiteLLMSingle(b *testing.B) {
	benchHandler(b, "/v1/ingest/litellm", testToken, liteLLMPayload(b, 0, ""))
}

func BenchmarkHandlerMeterSigned(b *testing.B) {
	body := readTestdata(b, "amberflo_meter_record.json")
	benchHandler(b, "/v1/ingest/meter", testMeterToken, body, sign(testHMACSecret, testNow, string(body))...)
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// discardWriter is an http.ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(code int) { w.code = code }

func BenchmarkSplitRecords(b *testing.B) {
	recs := make([][]byte, 20)
	for i := range recs {
		recs[i] = liteLLMPayload(b, i+1, "")
	}
	body := []byte(jsonArray(recs...))
	dst := make([][]byte, 0, 32)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for range b.N {
		var err error
		if dst, err = splitRecords(dst[:0], body); err != nil || len(dst) != 20 {
			b.Fatal(err)
		}
	}
}
