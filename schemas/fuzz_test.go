package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets, one per decoder. Each asserts, for any input:
//   - no panic;
//   - on error: a *DecodeError naming the decoder with a reason, and dst
//     returned unchanged (nothing appended);
//   - on success: every event satisfies the invariants (non-negative
//     buckets, non-empty id/customer/model, a plausible time...), the
//     caller's existing events are untouched, and the input is valid JSON
//     by encoding/json's standard (the scanners are never laxer than it).
//
// Run each for a while:
//
//	go test -run x -fuzz FuzzDecodeGateway -fuzztime 60s ./schemas/
//
// Inputs that found bugs stay in testdata/fuzz/<target>/.

func fuzzDecoder(f *testing.F, format string, opts DecodeOptions, seeds ...[]byte) {
	fuzzDecoderCheck(f, format, opts, nil, seeds...)
}

// fuzzDecoderCheck is fuzzDecoder with an extra check of successful decodes.
func fuzzDecoderCheck(f *testing.F, format string, opts DecodeOptions, check func(t *testing.T, msg []byte, evs []UsageEvent), seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	d, err := DecoderFor(format, opts)
	if err != nil {
		f.Fatal(err)
	}
	sentinel := UsageEvent{ID: "sentinel", CustomerID: "c", Model: "m"}
	f.Fuzz(func(t *testing.T, msg []byte) {
		dst := make([]UsageEvent, 1, 4)
		dst[0] = sentinel
		orig := bytes.Clone(msg)
		out, err := d.Decode(dst, msg)
		if !bytes.Equal(orig, msg) {
			t.Fatal("decoder modified its input")
		}
		if len(out) == 0 || out[0].ID != "sentinel" {
			t.Fatal("existing events clobbered")
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Decoder == "" || de.Reason == "" {
				t.Fatalf("error %v (%T) is not a complete *DecodeError", err, err)
			}
			if len(out) != 1 {
				t.Fatalf("error but %d events appended", len(out)-1)
			}
			return
		}
		checkInvariants(t, out[1:])
		if !validJSONStream(msg) {
			t.Fatalf("accepted input that encoding/json rejects: %q", msg)
		}
		if check != nil {
			check(t, msg, out[1:])
		}
	})
}

// validJSONStream reports whether msg is a sequence of valid JSON values.
func validJSONStream(msg []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(msg))
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

func seedFiles(f *testing.F, names ...string) [][]byte {
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			b, err = os.ReadFile(n)
		}
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzDecodeGateway(f *testing.F) {
	seeds := seedFiles(f, "examples/gateway_event.json")
	openai := jsonPath(f, seedFiles(f, "openai_usage.json")[0], "usage")
	anth := jsonPath(f, seedFiles(f, "anthropic_usage.json")[0], "usage")
	seeds = append(seeds,
		gw(`"openai_usage":`+string(openai)),
		gw(`"openai_responses_usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":2}}`),
		gw(`"anthropic_usage":`+string(anth)),
		gw(`"anthropic_usage":[{"input_tokens":1,"cache_creation":{"ephemeral_1h_input_tokens":3}},{"output_tokens":2}],"service_tier":null`),
		[]byte(`[`+string(gw(`"usage":{"input":1,"output":2}`))+`,`+string(gw(`"usage":{"requests":1},"dimensions":{"a\u00e9":"\ud83d\ude00"}`))+`]`),
		[]byte(`{"id":"x","time":1771718400123,"customer_id":"c","model":"m","usage":{"input":1.0e3},"reported_cost":"1e-3","version":1,"extra":[true,false,null]}`),
	)
	// The typical event the benchmark uses.
	seeds = append(seeds, benchGatewayEvent)
	fuzzDecoderCheck(f, FormatGateway, DecodeOptions{}, gatewayMatchesEncodingJSON, seeds...)
}

// gatewayMatchesEncodingJSON compares the hand-rolled scanner's strings with
// encoding/json's for a one-event message. Keys are matched exactly (a
// map, not a struct: encoding/json matches struct fields case-insensitively).
func gatewayMatchesEncodingJSON(t *testing.T, msg []byte, evs []UsageEvent) {
	var m map[string]json.RawMessage
	if len(evs) != 1 || json.Unmarshal(msg, &m) != nil {
		return
	}
	str := func(k string) string {
		var s string
		if raw, ok := m[k]; ok {
			json.Unmarshal(raw, &s)
		}
		return s
	}
	ev := evs[0]
	if ev.ID != str("id") || ev.CustomerID != str("customer_id") || ev.Model != str("model") || ev.Provider != str("provider") {
		t.Fatalf("strings differ from encoding/json: %+v", ev)
	}
	var dims map[string]string
	if raw, ok := m["dimensions"]; ok {
		json.Unmarshal(raw, &dims)
	}
	if len(dims) != len(ev.Dimensions) {
		t.Fatalf("dimensions %v, encoding/json %v", ev.Dimensions, dims)
	}
	for _, d := range ev.Dimensions {
		if v, ok := dims[d.Key]; !ok || v != d.Value {
			t.Fatalf("dimension %q=%q, encoding/json %q", d.Key, d.Value, v)
		}
	}
}

func FuzzDecodeLiteLLM(f *testing.F) {
	seeds := seedFiles(f, "litellm_standard_logging_payload.json")
	objs := seedFiles(f, "litellm_usage_object.json")[0]
	seeds = append(seeds,
		slp(`,"metadata":{"usage_object":`+string(jsonPath(f, objs, "openai_routed_reasoning_model"))+`}`),
		slp(`,"response":{"usage":`+string(jsonPath(f, objs, "anthropic_routed_with_prompt_caching"))+`,"service_tier":"flex"}`),
		slp(`,"status":"failure","prompt_tokens":"5","completion_tokens":0,"response_cost":"0.1"`),
		[]byte(`[`+string(slp(`,"prompt_tokens":1`))+`]`),
		[]byte(`{"id":"l","startTime":"2026-02-22 00:00:00.123456","model":"m","user":"u","usage":"completion_tokens=450 prompt_tokens=11200 prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=8000, cache_creation_tokens=2000)","metadata":"{'user_api_key_alias': 'a', 'x': [1, (2, 'b')], 'f': <f at 0x1>}","cost":"0.02"}`),
		[]byte(`{"id":"l","startTime":"1771718400","model":"m","user":"","usage":"{'prompt_tokens': 5, 'completion_tokens': 1}","metadata":"{'user_api_key_end_user_id': 'e'}","cost":"None"}`),
	)
	fuzzDecoder(f, FormatLiteLLM, DecodeOptions{}, seeds...)
}

func FuzzDecodeOpenRouter(f *testing.F) {
	seeds := seedFiles(f, "openrouter_generation.json", "openrouter_broadcast_webhook_otlp.json", "openrouter_completion_usage.json")
	seeds = append(seeds,
		[]byte(`{"customer_id":"c","dimensions":{"a":"b"},"time":1771718400123,"response":`+string(seeds[2])+`}`),
		[]byte(`{"customer_id":"c","response":{"id":"g","object":"response","created_at":1771718400,"model":"m","usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":1},"output_tokens":2,"cost":0.1}}}`),
		[]byte(otlpSpans(`{"key":"gen_ai.request.model","value":{"stringValue":"m"}},{"key":"gen_ai.usage.prompt_tokens","value":{"intValue":"10"}},{"key":"gen_ai.usage.cache_read.input_tokens","value":{"intValue":4}},{"key":"gen_ai.response.id","value":{"stringValue":"gen-1"}},{"key":"user.id","value":{"stringValue":"c"}},{"key":"trace.metadata.k","value":{"stringValue":"v"}}`)),
		[]byte(`{}`),
	)
	fuzzDecoder(f, FormatOpenRouter, DecodeOptions{}, seeds...)
}

func FuzzDecodeMeter(f *testing.F) {
	seeds := seedFiles(f, "amberflo_meter_record.json")
	seeds = append(seeds,
		[]byte(meterRec("llm_text_tokens", "5", `,"type":"in","cache":"c","cache_ttl":"1h","batch":"y"`)),
		[]byte(meterRec("llm_audio_tokens", "5.0", `,"type":"out","tier":"priority"`)+"\n"+meterRec("llm_seconds", "3", ``)),
		[]byte(`{"customerId":"c","meterApiName":"llm_requests","meterValue":1,"meterTimeInMillis":"1771718400123","dimensions":{"model":"m","z":"1","a":"2"}}`),
	)
	fuzzDecoder(f, FormatMeter, DecodeOptions{MeterCustomerFields: []string{"customerId", "dimensions.business_unit_id"}}, seeds...)
}

func FuzzDecodeAuto(f *testing.F) {
	seeds := seedFiles(f, "examples/gateway_event.json", "litellm_standard_logging_payload.json",
		"openrouter_generation.json", "openrouter_broadcast_webhook_otlp.json", "amberflo_meter_record.json",
		"amberflo_litellm_callback_events.json")
	fuzzDecoder(f, FormatAuto, DecodeOptions{}, seeds...)
}
