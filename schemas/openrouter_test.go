package schemas

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestOpenRouterShapes(t *testing.T) {
	completion := string(readTestdata(t, "openrouter_completion_usage.json"))
	generation := string(readTestdata(t, "openrouter_generation.json"))
	otlp := string(readTestdata(t, "openrouter_broadcast_webhook_otlp.json"))
	genData := string(jsonPath(t, []byte(generation), "data"))

	sonnet := sonnetBuckets
	sonnet[UnitRequests] = 1
	// The generation record has no cache-write count: the 2,000 cache-write
	// tokens inside native_tokens_prompt are billed as uncached input.
	genBuckets := qty(map[Unit]int64{UnitInput: 3200, UnitCachedInput: 8000, UnitOutput: 330, UnitReasoning: 120, UnitRequests: 1})
	// OpenRouter's Broadcast example has only input/output totals.
	otlpBuckets := qty(map[Unit]int64{UnitInput: 11200, UnitOutput: 450, UnitRequests: 1})
	genID := "openrouter:gen-1771718400-Qm3xTb7LzP0aR9vK2sWd"

	tests := []struct {
		name     string
		msg      string
		want     [NumUnits]int64
		id, cust string
		time     time.Time
		cost     string
		dims     string
	}{
		{"completion in wrapper", `{"customer_id":"cust-w","dimensions":{"app":"search"},"response":` + completion + `}`,
			sonnet, genID, "cust-w", time.Unix(1771718400, 0), "0.02025", "[{app search}]"},
		{"wrapper time wins", `{"customer_id":"cust-w","time":"2026-02-22T00:00:05Z","response":` + completion + `}`,
			sonnet, genID, "cust-w", time.Unix(1771718405, 0), "0.02025", "[]"},
		{"completion with user", strings.Replace(completion, `"model"`, `"user":"u-1","model"`, 1),
			sonnet, genID, "u-1", time.Unix(1771718400, 0), "0.02025", "[]"},
		{"generation", generation, genBuckets, genID, "customer-acme-001", time.Unix(1771718400, 123456000), "0.02025", "[]"},
		{"bare generation data", genData, genBuckets, genID, "customer-acme-001", time.Unix(1771718400, 123456000), "0.02025", "[]"},
		{"generation in wrapper", `{"customer_id":"cust-w","response":` + generation + `}`, genBuckets, genID, "cust-w", time.Unix(1771718400, 123456000), "0.02025", "[]"},
		{"broadcast", otlp, otlpBuckets, "openrouter:span:5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174", "customer-acme-001",
			time.Unix(1771718400, 123456000), "", "[{cost_center CC-1234}]"},
	}
	d := mustDecoder(t, FormatOpenRouter, DecodeOptions{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := decodeOne(t, d, []byte(tc.msg))
			if ev.Quantities != tc.want {
				t.Errorf("quantities\n got %v\nwant %v", ev.Quantities, tc.want)
			}
			cost := ""
			if ev.ReportedCost.Valid {
				cost = ev.ReportedCost.Decimal.String()
			}
			if ev.ID != tc.id || ev.CustomerID != tc.cust || !ev.Time.Equal(tc.time) || cost != tc.cost ||
				fmt.Sprint(ev.Dimensions) != tc.dims || ev.Provider != OpenRouterProvider || ev.Model != "anthropic/claude-sonnet-4.5" {
				t.Errorf("fields %+v", ev)
			}
		})
	}
}

func TestOpenRouterVariants(t *testing.T) {
	d := mustDecoder(t, FormatOpenRouter, DecodeOptions{})
	wrap := func(resp string) []byte { return []byte(`{"customer_id":"c","response":` + resp + `}`) }
	tests := []struct {
		name string
		msg  []byte
		want [NumUnits]int64
		tier Tier
	}{
		{"responses api", wrap(`{"id":"gen-r","object":"response","created_at":1771718400,"model":"openai/gpt-5","service_tier":"flex",
			"usage":{"input_tokens":5210,"input_tokens_details":{"cached_tokens":4096},"output_tokens":1834,"output_tokens_details":{"reasoning_tokens":1408},"total_tokens":7044,"cost":0.01}}`),
			qty(map[Unit]int64{UnitInput: 1114, UnitCachedInput: 4096, UnitOutput: 426, UnitReasoning: 1408, UnitRequests: 1}), TierFlex},
		{"final stream chunk", wrap(`{"id":"gen-s","object":"chat.completion.chunk","created":1771718400,"model":"m","choices":[],
			"usage":{"prompt_tokens":100,"completion_tokens":50,"prompt_tokens_details":{"cached_tokens":null,"audio_tokens":10},"completion_tokens_details":{"reasoning_tokens":5,"image_tokens":5,"audio_tokens":5},
			"server_tool_use_details":{"web_search_requests":2},"cost":"0.5"}}`),
			qty(map[Unit]int64{UnitInput: 90, UnitAudioInput: 10, UnitOutput: 35, UnitReasoning: 5, UnitImageOutput: 5, UnitAudioOutput: 5, UnitWebSearch: 2, UnitRequests: 1}), TierStandard},
		{"server_tool_use spelling", wrap(`{"id":"g","created":1771718400,"model":"m","usage":{"prompt_tokens":1,"completion_tokens":1,"server_tool_use":{"web_search_requests":3}}}`),
			qty(map[Unit]int64{UnitInput: 1, UnitOutput: 1, UnitWebSearch: 3, UnitRequests: 1}), TierStandard},
		{"otlp prompt/completion names with cache and reasoning", []byte(otlpSpans(`
			{"key":"gen_ai.request.model","value":{"stringValue":"anthropic/claude-sonnet-4.5"}},
			{"key":"gen_ai.usage.prompt_tokens","value":{"intValue":11200}},
			{"key":"gen_ai.usage.completion_tokens","value":{"intValue":"450"}},
			{"key":"gen_ai.usage.cache_read.input_tokens","value":{"intValue":"8000"}},
			{"key":"gen_ai.usage.cache_creation_input_tokens","value":{"intValue":"2000"}},
			{"key":"gen_ai.usage.reasoning_tokens","value":{"doubleValue":120.0}},
			{"key":"gen_ai.usage.cost","value":{"doubleValue":0.02025}},
			{"key":"user.id","value":{"stringValue":"c"}}`)),
			func() [NumUnits]int64 { q := sonnetBuckets; q[UnitRequests] = 1; return q }(), TierStandard},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := decodeOne(t, d, tc.msg)
			if ev.Quantities != tc.want {
				t.Errorf("quantities\n got %v\nwant %v", ev.Quantities, tc.want)
			}
			if ev.Tier != tc.tier {
				t.Errorf("tier %v", ev.Tier)
			}
		})
	}

	// Response id names the event; non-generation spans are skipped;
	// the connection test's empty payload yields nothing.
	msg := otlpSpans(`{"key":"gen_ai.response.model","value":{"stringValue":"m"}},{"key":"gen_ai.response.id","value":{"stringValue":"gen-9"}},{"key":"user.id","value":{"stringValue":"c"}}`)
	msg = strings.Replace(msg, `"spans":[`, `"spans":[{"traceId":"t0","spanId":"s0","name":"http","attributes":[{"key":"http.method","value":{"stringValue":"POST"}}]},`, 1)
	evs, err := d.Decode(nil, []byte(msg))
	if err != nil || len(evs) != 1 || evs[0].ID != "openrouter:gen-9" {
		t.Errorf("response id / skipped span: %v %+v", err, evs)
	}
	for _, empty := range []string{`{}`, `{"resourceSpans":[]}`, `{"resourceSpans":[{"scopeSpans":[{"spans":[]}]}]}`} {
		if evs, err := d.Decode(nil, []byte(empty)); err != nil || len(evs) != 0 {
			t.Errorf("%s: %v %v", empty, evs, err)
		}
	}
}

// otlpSpans wraps span attributes in a one-span OTLP-JSON trace.
func otlpSpans(attrs string) string {
	return `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"openrouter"}}]},"scopeSpans":[{"scope":{"name":"x"},"spans":[` +
		`{"traceId":"t1","spanId":"s1","startTimeUnixNano":"1771718400123456000","attributes":[` + attrs + `]}]}]}]}`
}

func TestOpenRouterErrors(t *testing.T) {
	d := mustDecoder(t, FormatOpenRouter, DecodeOptions{})
	completion := string(readTestdata(t, "openrouter_completion_usage.json"))
	twoSpans := otlpSpans(`{"key":"gen_ai.request.model","value":{"stringValue":"m"}},{"key":"user.id","value":{"stringValue":"c"}}`)
	twoSpans = strings.Replace(twoSpans, `]}]}]}]}`, `]},{"traceId":"t2","spanId":"s2","startTimeUnixNano":"1771718400123456000","attributes":[{"key":"gen_ai.request.model","value":{"stringValue":"m"}}]}]}]}]}`, 1)
	tests := []struct {
		name, msg   string
		index       int
		field, want string
	}{
		{"completion without customer", completion, 0, "user", `wrap the response as {"customer_id"`},
		{"wrapper without customer", `{"customer_id":"","response":` + completion + `}`, 0, "customer_id", "missing customer id"},
		{"wrapper response not object", `{"customer_id":"c","response":"x"}`, 0, "response", "expected an OpenRouter response object"},
		{"wrapper bad dims", `{"customer_id":"c","dimensions":{"a":1},"response":` + completion + `}`, 0, "dimensions.a", "expected a string value"},
		{"negative in wrapped", `{"customer_id":"c","response":` + strings.Replace(completion, `"cached_tokens": 8000`, `"cached_tokens": -8000`, 1) + `}`,
			0, "response.usage.prompt_tokens_details.cached_tokens", "negative count"},
		{"cached > prompt", `{"customer_id":"c","response":` + strings.Replace(completion, `"cached_tokens": 8000`, `"cached_tokens": 80000`, 1) + `}`,
			0, "response.usage.prompt_tokens", "is less than its cached"},
		{"missing usage", `{"customer_id":"c","response":{"id":"g","created":1771718400,"model":"m"}}`, 0, "response.usage", "missing usage"},
		{"missing time", `{"customer_id":"c","response":{"id":"g","model":"m","usage":{"prompt_tokens":1,"completion_tokens":1}}}`, 0, "response.created", "missing event time"},
		{"generation negative", strings.Replace(string(readTestdata(t, "openrouter_generation.json")), `"native_tokens_reasoning": 120`, `"native_tokens_reasoning": -1`, 1),
			0, "data.native_tokens_reasoning", "negative count"},
		{"generation bad time", strings.Replace(string(readTestdata(t, "openrouter_generation.json")), `2026-02-22T00:00:00.123456+00:00`, `yesterday`, 1),
			0, "data.created_at", "expected an RFC 3339 timestamp"},
		{"span without customer", twoSpans, 1, "attributes.user", "missing customer id: none of the span attributes user, external_user, user.id is set"},
		{"span bad tokens", otlpSpans(`{"key":"gen_ai.request.model","value":{"stringValue":"m"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"-3"}},{"key":"user.id","value":{"stringValue":"c"}}`),
			0, "attributes.gen_ai.usage.input_tokens", "negative count"},
		{"span no model", otlpSpans(`{"key":"gen_ai.usage.input_tokens","value":{"intValue":"3"}},{"key":"user.id","value":{"stringValue":"c"}}`),
			0, "attributes.gen_ai.response.model", "missing model"},
		{"span bad time", strings.Replace(otlpSpans(`{"key":"gen_ai.request.model","value":{"stringValue":"m"}},{"key":"user.id","value":{"stringValue":"c"}}`), `"1771718400123456000"`, `"soon"`, 1),
			0, "startTimeUnixNano", `expected an RFC 3339 timestamp, got "soon"`},
		{"span duplicate attribute", otlpSpans(`{"key":"gen_ai.request.model","value":{"stringValue":"m"}},{"key":"gen_ai.request.model","value":{"stringValue":"n"}}`),
			0, "resourceSpans.attributes.gen_ai.request.model", "duplicate attribute"},
		{"malformed otlp", `{"resourceSpans":[{"scopeSpans":[{"spans":[{]}]}]}`, 0, "", "expected a string key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantDecodeError(t, d, []byte(tc.msg), tc.index, tc.field, tc.want)
		})
	}
}

func TestOpenRouterCustomerFields(t *testing.T) {
	d := mustDecoder(t, FormatOpenRouter, DecodeOptions{OpenRouterCustomerFields: []string{"trace.metadata.customer", "session.id"}})
	msg := otlpSpans(`{"key":"gen_ai.request.model","value":{"stringValue":"m"}},{"key":"session.id","value":{"stringValue":"sess"}},{"key":"trace.metadata.customer","value":{"stringValue":"acme"}}`)
	if ev := decodeOne(t, d, []byte(msg)); ev.CustomerID != "acme" {
		t.Errorf("customer %q", ev.CustomerID)
	}
	gen := readTestdata(t, "openrouter_generation.json")
	d = mustDecoder(t, FormatOpenRouter, DecodeOptions{OpenRouterCustomerFields: []string{"workspace_id", "external_user"}})
	if ev := decodeOne(t, d, gen); ev.CustomerID != "customer-acme-001" {
		t.Errorf("customer %q", ev.CustomerID)
	}
}
