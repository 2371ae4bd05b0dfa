package schemas

import (
	"encoding/json"
	"strings"
	"testing"
)

// benchGatewayEvent is the "typical event" of the performance target: id,
// time, customer, provider, model, 4 usage fields, 2 dimensions.
var benchGatewayEvent = []byte(`{"id":"gw-7d0c6f2e-1b4a-4f7e-9c3d-5a8b2e1f0c94","time":"2026-02-22T00:00:00.123Z",` +
	`"customer_id":"customer-acme-001","provider":"anthropic","model":"claude-sonnet-4-5-20250929",` +
	`"dimensions":{"team":"search","env":"prod"},"usage":{"input":1200,"cached_input":8000,"output":330,"reasoning":120}}`)

func benchDecode(b *testing.B, format string, opts DecodeOptions, msg []byte, perMsg int) {
	d, err := DecoderFor(format, opts)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]UsageEvent, 0, perMsg)
	// Check once, outside the loop.
	if dst, err = d.Decode(dst, msg); err != nil || len(dst) != perMsg {
		b.Fatalf("decode: %v, %d events, want %d", err, len(dst), perMsg)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		dst, err = d.Decode(dst[:0], msg)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perMsg), "ns/event")
}

func BenchmarkDecodeGateway(b *testing.B) {
	benchDecode(b, FormatGateway, DecodeOptions{}, benchGatewayEvent, 1)
}

func BenchmarkDecodeGatewayBatch100(b *testing.B) {
	// One Kafka message carrying 100 events: the per-event cost without
	// per-message overhead. ns/op / 100 = ns per event.
	msg := "[" + strings.Repeat(string(benchGatewayEvent)+",", 99) + string(benchGatewayEvent) + "]"
	benchDecode(b, FormatGateway, DecodeOptions{}, []byte(msg), 100)
}

func BenchmarkDecodeGatewayOpenAIUsage(b *testing.B) {
	msg := []byte(`{"id":"chatcmpl-Bx9k2LmQ7rT4vW1yZ3aC5eG8iK0","time":1771718400123,"customer_id":"customer-acme-001",` +
		`"provider":"openai","model":"gpt-5-2025-08-07","service_tier":"default","dimensions":{"team":"search"},` +
		`"openai_usage":{"prompt_tokens":5210,"completion_tokens":1834,"total_tokens":7044,"prompt_tokens_details":{"cached_tokens":4096,"audio_tokens":0},` +
		`"completion_tokens_details":{"reasoning_tokens":1408,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`)
	benchDecode(b, FormatGateway, DecodeOptions{}, msg, 1)
}

func BenchmarkDecodeGatewayWithCost(b *testing.B) {
	msg := []byte(strings.Replace(string(benchGatewayEvent), `"usage"`, `"reported_cost":"0.02025","usage"`, 1))
	benchDecode(b, FormatGateway, DecodeOptions{}, msg, 1)
}

// BenchmarkGatewayEncodingJSON is the baseline the hand-rolled scanner
// replaces: encoding/json into a struct with a map for usage and dimensions.
func BenchmarkGatewayEncodingJSON(b *testing.B) {
	type event struct {
		ID         string            `json:"id"`
		Time       string            `json:"time"`
		CustomerID string            `json:"customer_id"`
		Provider   string            `json:"provider"`
		Model      string            `json:"model"`
		Dimensions map[string]string `json:"dimensions"`
		Usage      map[string]int64  `json:"usage"`
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchGatewayEvent)))
	for b.Loop() {
		var ev event
		if err := json.Unmarshal(benchGatewayEvent, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeLiteLLM(b *testing.B) {
	benchDecode(b, FormatLiteLLM, DecodeOptions{}, readTestdata(b, "litellm_standard_logging_payload.json"), 1)
}

func BenchmarkDecodeLiteLLMBatch100(b *testing.B) {
	one := string(readTestdata(b, "litellm_standard_logging_payload.json"))
	msg := "[" + strings.Repeat(one+",", 99) + one + "]"
	benchDecode(b, FormatLiteLLM, DecodeOptions{}, []byte(msg), 100)
}

func BenchmarkDecodeOpenRouterCompletion(b *testing.B) {
	msg := `{"customer_id":"customer-acme-001","response":` + string(readTestdata(b, "openrouter_completion_usage.json")) + `}`
	benchDecode(b, FormatOpenRouter, DecodeOptions{}, []byte(msg), 1)
}

func BenchmarkDecodeOpenRouterGeneration(b *testing.B) {
	benchDecode(b, FormatOpenRouter, DecodeOptions{}, readTestdata(b, "openrouter_generation.json"), 1)
}

func BenchmarkDecodeOpenRouterBroadcast(b *testing.B) {
	benchDecode(b, FormatOpenRouter, DecodeOptions{}, readTestdata(b, "openrouter_broadcast_webhook_otlp.json"), 1)
}

func BenchmarkDecodeMeter(b *testing.B) {
	// 7 records, 6 events (the latency record is not billable).
	benchDecode(b, FormatMeter, DecodeOptions{}, readTestdata(b, "amberflo_meter_record.json"), 6)
}

func BenchmarkDecodeAutoGateway(b *testing.B) {
	benchDecode(b, FormatAuto, DecodeOptions{}, benchGatewayEvent, 1)
}

// BenchmarkDecodeLiteLLMCompact is the same payload as LiteLLM sends it
// (json.dumps with default separators: no newlines or indentation).
func BenchmarkDecodeLiteLLMCompact(b *testing.B) {
	var v any
	if err := json.Unmarshal(readTestdata(b, "litellm_standard_logging_payload.json"), &v); err != nil {
		b.Fatal(err)
	}
	msg, _ := json.Marshal(v)
	msg = []byte(strings.NewReplacer(`,"`, `, "`, `":`, `": `).Replace(string(msg)))
	benchDecode(b, FormatLiteLLM, DecodeOptions{}, msg, 1)
}
