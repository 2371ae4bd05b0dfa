package schemas

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// gw builds a gateway event around a usage fragment (`"usage":{...}` or
// `"openai_usage":{...}`...).
func gw(usage string) []byte {
	return []byte(`{"id":"e1","time":"2026-02-22T00:00:00.123Z","customer_id":"c1","model":"m1",` + usage + `}`)
}

func TestGatewayExample(t *testing.T) {
	d := mustDecoder(t, FormatGateway, DecodeOptions{})
	ev := decodeOne(t, d, readTestdataFile(t, "examples/gateway_event.json"))
	want := UsageEvent{
		ID:         "gw-7d0c6f2e-1b4a-4f7e-9c3d-5a8b2e1f0c94",
		Time:       refTime,
		CustomerID: "customer-acme-001",
		Dimensions: []Dimension{{"team", "search"}, {"api_key", "search-backend-prod"}},
		Provider:   "anthropic",
		Model:      "claude-sonnet-4-5-20250929",
		Tier:       TierStandard,
		Quantities: sonnetBuckets,
		ReportedCost: decimal.NullDecimal{
			Decimal: decimal.RequireFromString("0.02025"), Valid: true},
		Source: SourceGateway,
	}
	if fmt.Sprintf("%+v", ev) != fmt.Sprintf("%+v", want) {
		t.Errorf("got  %+v\nwant %+v", ev, want)
	}
}

func TestGatewayProviderUsage(t *testing.T) {
	openaiChat := jsonPath(t, readTestdata(t, "openai_usage.json"), "usage")
	openaiResp := jsonPath(t, readTestdata(t, "openai_responses_usage.json"), "usage")
	anth := jsonPath(t, readTestdata(t, "anthropic_usage.json"), "usage")
	stream := readTestdata(t, "anthropic_stream_usage_events.json")
	streamStart := jsonPath(t, stream, "0", "message", "usage")
	streamDelta := jsonPath(t, stream, "1", "usage")
	// OpenAI's own numbers: 5,210 prompt tokens of which 4,096 cached;
	// 1,834 completion tokens of which 1,408 reasoning.
	openaiBuckets := qty(map[Unit]int64{UnitInput: 1114, UnitCachedInput: 4096, UnitOutput: 426, UnitReasoning: 1408})
	// The streamed Anthropic message has no thinking breakdown: all 450
	// output tokens are output (Anthropic prices thinking as output).
	streamBuckets := qty(map[Unit]int64{UnitInput: 1200, UnitCachedInput: 8000, UnitCacheWrite5m: 2000, UnitOutput: 450})

	tests := []struct {
		name  string
		usage string
		want  [NumUnits]int64
		tier  Tier
	}{
		{"openai chat", `"openai_usage":` + string(openaiChat), openaiBuckets, TierStandard},
		{"openai responses", `"openai_responses_usage":` + string(openaiResp), openaiBuckets, TierStandard},
		{"anthropic message", `"anthropic_usage":` + string(anth), sonnetBuckets, TierStandard},
		{"anthropic stream final delta", `"anthropic_usage":` + string(streamDelta), streamBuckets, TierStandard},
		{"anthropic stream start+delta", `"anthropic_usage":[` + string(streamStart) + `,` + string(streamDelta) + `]`, streamBuckets, TierStandard},
		{"anthropic stream delta without inputs", `"anthropic_usage":[` + string(streamStart) + `,{"output_tokens":450}]`, streamBuckets, TierStandard},
		{"anthropic 1h writes", `"anthropic_usage":{"input_tokens":10,"cache_creation_input_tokens":2000,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1500},"output_tokens":5,"service_tier":"batch"}`,
			qty(map[Unit]int64{UnitInput: 10, UnitCacheWrite5m: 500, UnitCacheWrite1h: 1500, UnitOutput: 5}), TierBatch},
		{"anthropic split without total", `"anthropic_usage":{"input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":7},"output_tokens":5}`,
			qty(map[Unit]int64{UnitInput: 10, UnitCacheWrite1h: 7, UnitOutput: 5}), TierStandard},
		{"anthropic web search", `"anthropic_usage":{"input_tokens":10,"output_tokens":5,"server_tool_use":{"web_search_requests":3,"web_fetch_requests":1}}`,
			qty(map[Unit]int64{UnitInput: 10, UnitOutput: 5, UnitWebSearch: 3}), TierStandard},
		{"top-level tier wins", `"service_tier":"priority","anthropic_usage":{"input_tokens":1,"output_tokens":1,"service_tier":"standard"}`,
			qty(map[Unit]int64{UnitInput: 1, UnitOutput: 1}), TierPriority},
		{"openai audio and cache writes",
			`"openai_usage":{"prompt_tokens":1000,"completion_tokens":500,"prompt_tokens_details":{"cached_tokens":100,"audio_tokens":200,"cache_write_tokens":50,"image_tokens":10},"completion_tokens_details":{"reasoning_tokens":50,"audio_tokens":300,"accepted_prediction_tokens":4,"rejected_prediction_tokens":6}}`,
			qty(map[Unit]int64{UnitInput: 640, UnitCachedInput: 100, UnitCacheWrite5m: 50, UnitAudioInput: 200, UnitImageInput: 10,
				UnitOutput: 150, UnitReasoning: 50, UnitAudioOutput: 300}), TierStandard},
		{"openai null details", `"openai_usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,"prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":null}}`,
			qty(map[Unit]int64{UnitInput: 7, UnitOutput: 3}), TierStandard},
		{"explicit buckets incl. non-token units", `"usage":{"input":1,"cache_write_1h":2,"audio_output":3,"image_input":4,"image_output":5,"requests":1,"web_search":2,"images":3,"seconds":60}`,
			qty(map[Unit]int64{UnitInput: 1, UnitCacheWrite1h: 2, UnitAudioOutput: 3, UnitImageInput: 4, UnitImageOutput: 5,
				UnitRequests: 1, UnitWebSearch: 2, UnitImages: 3, UnitSeconds: 60}), TierStandard},
		{"integral forms of counts", `"usage":{"input":1200.0,"output":3.3e2,"reasoning":null}`,
			qty(map[Unit]int64{UnitInput: 1200, UnitOutput: 330}), TierStandard},
	}
	d := mustDecoder(t, FormatGateway, DecodeOptions{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := decodeOne(t, d, gw(tc.usage))
			if !strings.HasPrefix(tc.usage, `"usage"`) {
				tc.want[UnitRequests] = 1 // provider usage: one request
			}
			if ev.Quantities != tc.want {
				t.Errorf("quantities\n got %v\nwant %v", ev.Quantities, tc.want)
			}
			if ev.Tier != tc.tier {
				t.Errorf("tier %v, want %v", ev.Tier, tc.tier)
			}
		})
	}
}

func TestGatewayFields(t *testing.T) {
	d := mustDecoder(t, FormatGateway, DecodeOptions{})
	ev := decodeOne(t, d, []byte(` {"unknown":{"a":[1,2,{"b":null}]},"id":"\u00e9\ud83d\ude00\n\"\\\/","time":1771718400123,
		"customer_id":"c\u0000d","model":"m","provider":null,"service_tier":"flex","dimensions":{"k\u00e9":"v\ud800","b":""},
		"usage":{"input":1},"reported_cost":1.5e-3,"version":1} `))
	if ev.ID != "é😀\n\"\\/" || ev.CustomerID != "c\x00d" || ev.Provider != "" || ev.Tier != TierFlex {
		t.Errorf("strings: %q %q %q %v", ev.ID, ev.CustomerID, ev.Provider, ev.Tier)
	}
	if want := []Dimension{{"ké", "v\uFFFD"}, {"b", ""}}; fmt.Sprint(ev.Dimensions) != fmt.Sprint(want) {
		t.Errorf("dimensions %q, want %q", ev.Dimensions, want)
	}
	if !ev.Time.Equal(time.UnixMilli(1771718400123)) || ev.ReportedCost.Decimal.String() != "0.0015" {
		t.Errorf("time %v cost %v", ev.Time, ev.ReportedCost)
	}
	// Offsets and fractional seconds normalize to UTC.
	for in, want := range map[string]string{
		`"2026-02-22T01:30:00+01:30"`:          "2026-02-22T00:00:00Z",
		`"2026-02-21T19:00:00.5-05:00"`:        "2026-02-22T00:00:00.5Z",
		`"2026-02-22 00:00:00.123456789Z"`:     "2026-02-22T00:00:00.123456789Z",
		`"2026-02-22T00:00:00.1234567891234Z"`: "2026-02-22T00:00:00.123456789Z",
	} {
		ev := decodeOne(t, d, []byte(`{"id":"e","time":`+in+`,"customer_id":"c","model":"m","usage":{}}`))
		if got := ev.Time.Format(time.RFC3339Nano); got != want || ev.Time.Location() != time.UTC {
			t.Errorf("time %s: got %s, want %s", in, got, want)
		}
	}
	// Many dimensions (beyond the inline ones) keep their order.
	var b strings.Builder
	b.WriteString(`{"id":"e","time":1771718400123,"customer_id":"c","model":"m","usage":{},"dimensions":{`)
	for i := range 20 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":"v%d"`, i, i)
	}
	b.WriteString("}}")
	ev = decodeOne(t, d, []byte(b.String()))
	if len(ev.Dimensions) != 20 || ev.Dimensions[19] != (Dimension{"k19", "v19"}) {
		t.Errorf("dimensions %v", ev.Dimensions)
	}
}

func TestGatewayMultipleRecords(t *testing.T) {
	d := mustDecoder(t, FormatGateway, DecodeOptions{})
	one := string(gw(`"usage":{"input":1}`))
	two := strings.Replace(one, `"e1"`, `"e2"`, 1)
	for name, msg := range map[string]string{
		"array":  "[" + one + ",\n" + two + "]",
		"ndjson": one + "\n" + two + "\n",
	} {
		evs, err := d.Decode(nil, []byte(msg))
		if err != nil || len(evs) != 2 || evs[0].ID != "e1" || evs[1].ID != "e2" {
			t.Errorf("%s: %v %+v", name, err, evs)
		}
	}
	if evs, err := d.Decode(nil, []byte(" [ ] ")); err != nil || len(evs) != 0 {
		t.Errorf("empty array: %v %v", evs, err)
	}
	bad := strings.Replace(two, `"input":1`, `"input":-1`, 1)
	wantDecodeError(t, d, []byte("["+one+","+bad+"]"), 1, "usage.input", "negative count -1")
	wantDecodeError(t, d, []byte(one+"\n"+bad), 1, "usage.input", "negative count -1")
	wantDecodeError(t, d, []byte("["+one+",1]"), 1, "", "expected an object")
	wantDecodeError(t, d, []byte("["+one+"] x"), 1, "", "expected end of input")
}

func TestGatewayErrors(t *testing.T) {
	d := mustDecoder(t, FormatGateway, DecodeOptions{})
	tests := []struct {
		name, msg, field, reason string
	}{
		{"missing id", `{"time":1771718400123,"customer_id":"c","model":"m","usage":{}}`, "id", "missing idempotency key"},
		{"empty id", `{"id":"","time":1771718400123,"customer_id":"c","model":"m","usage":{}}`, "id", "missing"},
		{"null id", `{"id":null,"time":1771718400123,"customer_id":"c","model":"m","usage":{}}`, "id", "expected a string, got null"},
		{"missing customer", `{"id":"e","time":1771718400123,"model":"m","usage":{}}`, "customer_id", "missing customer id"},
		{"missing model", `{"id":"e","time":1771718400123,"customer_id":"c","usage":{}}`, "model", "missing model"},
		{"missing time", `{"id":"e","customer_id":"c","model":"m","usage":{}}`, "time", "missing event time"},
		{"missing usage", `{"id":"e","time":1771718400123,"customer_id":"c","model":"m"}`, "usage", "missing"},
		{"two usages", string(gw(`"usage":{},"anthropic_usage":{"input_tokens":1,"output_tokens":1}`)), "usage", "more than one"},
		{"epoch seconds", `{"id":"e","time":1771718400,"customer_id":"c","model":"m","usage":{}}`, "time", "wrong unit?"},
		{"bad timestamp", `{"id":"e","time":"2026-02-30T00:00:00Z","customer_id":"c","model":"m","usage":{}}`, "time", "expected an RFC 3339 timestamp"},
		{"no zone", `{"id":"e","time":"2026-02-22T00:00:00","customer_id":"c","model":"m","usage":{}}`, "time", "has no time zone"},
		{"time bool", `{"id":"e","time":true,"customer_id":"c","model":"m","usage":{}}`, "time", "got a boolean"},
		{"negative", string(gw(`"usage":{"output":-5}`)), "usage.output", "negative count -5"},
		{"fractional", string(gw(`"usage":{"output":1.5}`)), "usage.output", "fractional 1.5"},
		{"string count", string(gw(`"usage":{"output":"5"}`)), "usage.output", "got a string"},
		{"too large", string(gw(`"usage":{"output":10000000000000}`)), "usage.output", "out of range"},
		{"huge", string(gw(`"usage":{"output":1e999999999999}`)), "usage.output", "out of range"},
		{"unknown unit", string(gw(`"usage":{"tokens":5}`)), "usage.tokens", "unknown unit; expected one of input, cached_input"},
		{"duplicate unit", string(gw(`"usage":{"input":5,"input":6}`)), "usage.input", "duplicate key"},
		{"duplicate field", `{"id":"e","id":"f","time":1771718400123,"customer_id":"c","model":"m","usage":{}}`, "id", "duplicate key"},
		{"duplicate dimension", string(gw(`"usage":{},"dimensions":{"a":"1","a":"2"}`)), "dimensions.a", "duplicate key"},
		{"dimension not string", string(gw(`"usage":{},"dimensions":{"a":1}`)), "dimensions.a", "expected a string value, got a number"},
		{"empty dimension key", string(gw(`"usage":{},"dimensions":{"":"x"}`)), `dimensions.""`, "empty dimension key"},
		{"unknown tier", string(gw(`"usage":{},"service_tier":"gold"`)), "service_tier", "expected one of standard"},
		{"negative cost", string(gw(`"usage":{},"reported_cost":"-1"`)), "reported_cost", "negative amount"},
		{"bad cost", string(gw(`"usage":{},"reported_cost":"1,5"`)), "reported_cost", "expected a decimal amount"},
		{"version 2", string(gw(`"usage":{},"version":2`)), "version", "unsupported version 2"},
		{"openai cached > prompt", string(gw(`"openai_usage":{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":11}}`)),
			"openai_usage.prompt_tokens", "is less than its cached"},
		{"openai reasoning > completion", string(gw(`"openai_usage":{"prompt_tokens":10,"completion_tokens":1,"completion_tokens_details":{"reasoning_tokens":2}}`)),
			"openai_usage.completion_tokens", "is less than its reasoning"},
		{"openai missing prompt", string(gw(`"openai_usage":{"completion_tokens":1}`)), "openai_usage.prompt_tokens", "missing prompt_tokens"},
		{"openai negative detail", string(gw(`"openai_responses_usage":{"input_tokens":10,"output_tokens":1,"input_tokens_details":{"cached_tokens":-1}}`)),
			"openai_responses_usage.input_tokens_details.cached_tokens", "negative"},
		{"anthropic split mismatch", string(gw(`"anthropic_usage":{"input_tokens":1,"output_tokens":1,"cache_creation_input_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":2}}`)),
			"anthropic_usage.cache_creation", "do not match"},
		{"anthropic thinking > output", string(gw(`"anthropic_usage":{"input_tokens":1,"output_tokens":1,"output_tokens_details":{"thinking_tokens":2}}`)),
			"anthropic_usage.output_tokens_details.thinking_tokens", "exceed output_tokens"},
		{"anthropic missing output", string(gw(`"anthropic_usage":{"input_tokens":1}`)), "anthropic_usage.output_tokens", "missing output_tokens"},
		{"anthropic array bad element", string(gw(`"anthropic_usage":[{"input_tokens":1},{"output_tokens":-1}]`)), "anthropic_usage[1].output_tokens", "negative"},
		{"anthropic bad tier", string(gw(`"anthropic_usage":{"input_tokens":1,"output_tokens":1,"service_tier":"gold"}`)), "anthropic_usage.service_tier", "expected one of"},
		{"not json", `nope`, "", "expected a JSON object or array"},
		{"empty", ``, "", "expected a JSON object or array"},
		{"truncated", `{"id":"e","time":1771718400123`, "", "expected ',' or '}'"},
		{"trailing comma", `{"id":"e",}`, "", "expected a string key"},
		{"bad escape", `{"id":"\x"}`, "id", "invalid escape"},
		{"bad unicode escape", `{"id":"\u12"}`, "id", `invalid \u escape`},
		{"control char", "{\"id\":\"a\tb\"}", "id", "control character"},
		{"invalid utf-8", "{\"id\":\"a\xffb\"}", "id", "invalid UTF-8"},
		{"leading zero", string(gw(`"usage":{"input":012}`)), "usage", "expected ',' or '}'"},
		{"bad literal in unknown", string(gw(`"usage":{},"x":tru`)), "", "invalid literal; expected true"},
		{"bad number in unknown", string(gw(`"usage":{},"x":1.`)), "", "expected a digit after '.'"},
		{"deep nesting", string(gw(`"usage":{},"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300))), "", "nesting deeper than 256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantDecodeError(t, d, []byte(tc.msg), 0, tc.field, tc.reason)
		})
	}
}

// TestGatewayMatchesEncodingJSON checks the hand-rolled scanner against
// encoding/json on the string fields, escapes included.
func TestGatewayMatchesEncodingJSON(t *testing.T) {
	d := mustDecoder(t, FormatGateway, DecodeOptions{})
	for _, s := range []string{`plain`, `\"quoted\"`, `tab\there`, `\u00e9\u4e2d`, `\ud83d\ude00`, `\ud83d`, `\ude00x`, `\ud83d\u0041`, `日本語`, `\/\b\f\r`} {
		msg := []byte(`{"id":"` + s + `","time":1771718400123,"customer_id":"c","model":"m","usage":{}}`)
		ev := decodeOne(t, d, msg)
		var ref struct{ ID string }
		if err := json.Unmarshal(msg, &ref); err != nil {
			t.Fatal(err)
		}
		if ev.ID != ref.ID {
			t.Errorf("%s: got %q, encoding/json %q", s, ev.ID, ref.ID)
		}
	}
}

// TestGatewayNoAliasing checks that events do not alias the message buffer,
// which the caller reuses.
func TestGatewayNoAliasing(t *testing.T) {
	d := mustDecoder(t, FormatGateway, DecodeOptions{})
	msg := readTestdataFile(t, "examples/gateway_event.json")
	ev := decodeOne(t, d, msg)
	for i := range msg {
		msg[i] = 'x'
	}
	if ev.ID != "gw-7d0c6f2e-1b4a-4f7e-9c3d-5a8b2e1f0c94" || ev.Dimensions[0].Value != "search" {
		t.Errorf("event changed with the buffer: %+v", ev)
	}
}
