package schemas

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// meterRec builds one meter record.
func meterRec(meter, value, dims string) string {
	return `{"customerId":"c1","meterApiName":"` + meter + `","meterValue":` + value +
		`,"meterTimeInMillis":1771718400123,"uniqueId":"req-1","dimensions":{"model":"m1"` + dims + `}}`
}

func TestMeterSharedRecords(t *testing.T) {
	d := mustDecoder(t, FormatMeter, DecodeOptions{})
	evs, err := d.Decode(nil, readTestdata(t, "amberflo_meter_record.json"))
	if err != nil {
		t.Fatal(err)
	}
	// 7 records; llm_api_call_ms (latency) produces no event.
	if len(evs) != 6 {
		t.Fatalf("got %d events, want 6", len(evs))
	}
	var sum [NumUnits]int64
	ids := map[string]bool{}
	for _, ev := range evs {
		for u, q := range ev.Quantities {
			sum[u] += q
		}
		if ids[ev.ID] {
			t.Errorf("duplicate id %s", ev.ID)
		}
		ids[ev.ID] = true
		if ev.CustomerID != "customer-acme-001" || ev.Model != "claude-sonnet-4-5-20250929" || ev.Provider != "anthropic" ||
			!ev.Time.Equal(time.UnixMilli(1771718400123)) || ev.Tier != TierStandard || ev.Source != SourceMeter ||
			!strings.HasPrefix(ev.ID, "meter:chatcmpl-5f1c2a7e-3b9d-4c61-9a0e-7d2b8e4f1a90:") {
			t.Errorf("fields %+v", ev)
		}
		for _, dm := range ev.Dimensions {
			switch dm.Key {
			case "type", "cache", "tier", "batch", "model", "provider":
				t.Errorf("unit dimension %q kept", dm.Key)
			}
		}
	}
	want := sonnetBuckets
	want[UnitRequests] = 1 // llm_api_call
	if sum != want {
		t.Errorf("summed buckets\n got %v\nwant %v", sum, want)
	}
	// Each record is exactly one unit.
	for i, u := range []Unit{UnitRequests, UnitInput, UnitCachedInput, UnitCacheWrite5m, UnitOutput, UnitReasoning} {
		if evs[i].Quantities[u] == 0 {
			t.Errorf("event %d: no %s", i, u)
		}
	}
	// Redelivery gives the same keys.
	again, _ := d.Decode(nil, readTestdata(t, "amberflo_meter_record.json"))
	for i := range again {
		if again[i].ID != evs[i].ID {
			t.Errorf("event %d: key not stable", i)
		}
	}
}

func TestMeterCallbackEvents(t *testing.T) {
	msg := readTestdata(t, "amberflo_litellm_callback_events.json")
	// The callback's records carry no customerId; without a fallback the
	// first billable record is refused.
	wantDecodeError(t, mustDecoder(t, FormatMeter, DecodeOptions{}), msg, 1, "customerId", "missing customer id")

	d := mustDecoder(t, FormatMeter, DecodeOptions{MeterCustomerFields: []string{"customerId", "dimensions.business_unit_id"}})
	evs, err := d.Decode(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, ev := range evs {
		got += fmt.Sprintf("%s/%v ", ev.CustomerID, ev.Quantities)
		for _, dm := range ev.Dimensions {
			if dm.Key == "business_unit_id" {
				t.Error("customer dimension kept")
			}
		}
	}
	want := fmt.Sprintf("engineering/%v engineering/%v engineering/%v ",
		qty(map[Unit]int64{UnitRequests: 1}), qty(map[Unit]int64{UnitInput: 11}), qty(map[Unit]int64{UnitOutput: 2}))
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestMeterUnits(t *testing.T) {
	tests := []struct {
		meter, value, dims string
		unit               Unit
		n                  int64
		tier               Tier
	}{
		{"llm_text_tokens", "1200", `,"type":"in","cache":"n"`, UnitInput, 1200, TierStandard},
		{"llm_text_tokens", "1200", `,"type":"in"`, UnitInput, 1200, TierStandard},
		{"llm_text_tokens", "8000", `,"type":"in","cache":"r"`, UnitCachedInput, 8000, TierStandard},
		{"llm_text_tokens", "2000", `,"type":"in","cache":"c"`, UnitCacheWrite5m, 2000, TierStandard},
		{"llm_text_tokens", "2000", `,"type":"in","cache":"c","cache_ttl":"1h"`, UnitCacheWrite1h, 2000, TierStandard},
		{"llm_text_tokens", "330", `,"type":"out","cache":"n","batch":"y"`, UnitOutput, 330, TierBatch},
		{"llm_reasoning_tokens", "120", `,"type":"out","tier":"flex"`, UnitReasoning, 120, TierFlex},
		{"llm_reasoning_tokens", "120", `,"tier":"priority","batch":"n"`, UnitReasoning, 120, TierPriority},
		{"llm_audio_tokens", "7", `,"type":"in"`, UnitAudioInput, 7, TierStandard},
		{"llm_audio_tokens", "7", `,"type":"out"`, UnitAudioOutput, 7, TierStandard},
		{"llm_image_tokens", "9", `,"type":"in"`, UnitImageInput, 9, TierStandard},
		{"llm_image_tokens", "9", `,"type":"out"`, UnitImageOutput, 9, TierStandard},
		{"llm_requests", "1", ``, UnitRequests, 1, TierStandard},
		{"llm_seconds", "61", ``, UnitSeconds, 61, TierStandard},
		{"llm_text_tokens", "1200.0", `,"type":"in"`, UnitInput, 1200, TierStandard},
		{"llm_text_tokens", "1.2e3", `,"type":"in"`, UnitInput, 1200, TierStandard},
	}
	d := mustDecoder(t, FormatMeter, DecodeOptions{})
	for _, tc := range tests {
		t.Run(tc.meter+tc.dims, func(t *testing.T) {
			ev := decodeOne(t, d, []byte(meterRec(tc.meter, tc.value, tc.dims)))
			want := qty(map[Unit]int64{tc.unit: tc.n})
			if ev.Quantities != want || ev.Tier != tc.tier {
				t.Errorf("got %v %v, want %v %v", ev.Quantities, ev.Tier, want, tc.tier)
			}
		})
	}
}

func TestMeterKeys(t *testing.T) {
	d := mustDecoder(t, FormatMeter, DecodeOptions{})
	id := func(rec string) string { return decodeOne(t, d, []byte(rec)).ID }
	in := meterRec("llm_text_tokens", "5", `,"type":"in","cache":"n","team":"a"`)
	if a, b := id(in), id(meterRec("llm_text_tokens", "5", `,"type":"in","team":"a"`)); a != b {
		t.Error("cache=n and no cache give different keys")
	}
	if a, b := id(in), id(meterRec("llm_text_tokens", "6", `,"type":"in","cache":"n","team":"b"`)); a != b {
		t.Error("value or non-unit dimensions changed the key of a uniqueId record")
	}
	for name, other := range map[string]string{
		"cache read":  meterRec("llm_text_tokens", "5", `,"type":"in","cache":"r"`),
		"output":      meterRec("llm_text_tokens", "5", `,"type":"out"`),
		"batch":       meterRec("llm_text_tokens", "5", `,"type":"in","batch":"y"`),
		"other model": strings.Replace(in, `"m1"`, `"m2"`, 1),
		"customer":    strings.Replace(in, `"c1"`, `"c2"`, 1),
		"uniqueId":    strings.Replace(in, `"req-1"`, `"req-2"`, 1),
	} {
		if id(other) == id(in) {
			t.Errorf("%s: same key as the base record", name)
		}
	}
	// Without uniqueId the content is the key, independent of dimension order.
	noID := func(dims string) string {
		return `{"customerId":"c1","meterApiName":"llm_text_tokens","meterValue":5,"meterTimeInMillis":1771718400123,"dimensions":{` + dims + `}}`
	}
	a := id(noID(`"model":"m1","type":"in","team":"a"`))
	if b := id(noID(`"team":"a","type":"in","model":"m1"`)); a != b || !strings.HasPrefix(a, "meter:h:") {
		t.Errorf("content keys %s %s", a, b)
	}
	if b := id(noID(`"model":"m1","type":"in","team":"b"`)); a == b {
		t.Error("content key ignores dimensions")
	}
}

func TestMeterErrors(t *testing.T) {
	d := mustDecoder(t, FormatMeter, DecodeOptions{})
	tests := []struct {
		name, msg, field, reason string
	}{
		{"fractional tokens", meterRec("llm_text_tokens", "12.5", `,"type":"in"`), "meterValue", "expected an integer count for llm_text_tokens, got fractional 12.5"},
		{"negative", meterRec("llm_text_tokens", "-5", `,"type":"in"`), "meterValue", "negative count -5"},
		{"value as string", meterRec("llm_text_tokens", `"5"`, `,"type":"in"`), "meterValue", "got a string"},
		{"unknown meter", meterRec("llm_tokens", "5", ``), "meterApiName", `unknown meter "llm_tokens"`},
		{"unbillable meter", meterRec("llm_citation_tokens", "5", ``), "meterApiName", `meter "llm_citation_tokens" has no tariff unit yet`},
		{"missing type", meterRec("llm_text_tokens", "5", ``), "dimensions.type", `expected "in" or "out" for llm_text_tokens`},
		{"bad cache", meterRec("llm_text_tokens", "5", `,"type":"in","cache":"x"`), "dimensions.cache", `expected "n", "r" or "c"`},
		{"cache on output", meterRec("llm_text_tokens", "5", `,"type":"out","cache":"r"`), "dimensions.cache", "applies to input tokens only"},
		{"reasoning in", meterRec("llm_reasoning_tokens", "5", `,"type":"in"`), "dimensions.type", "reasoning tokens are output"},
		{"bad ttl", meterRec("llm_text_tokens", "5", `,"type":"in","cache":"c","cache_ttl":"2h"`), "dimensions.cache_ttl", `expected "5m" or "1h"`},
		{"batch conflict", meterRec("llm_text_tokens", "5", `,"type":"in","batch":"y","tier":"flex"`), "dimensions.batch", "conflicts with tier"},
		{"bad batch", meterRec("llm_text_tokens", "5", `,"type":"in","batch":"maybe"`), "dimensions.batch", `expected "y" or "n"`},
		{"bad tier", meterRec("llm_text_tokens", "5", `,"type":"in","tier":"gold"`), "dimensions.tier", "expected one of standard"},
		{"missing model", `{"customerId":"c","meterApiName":"llm_requests","meterValue":1,"meterTimeInMillis":1771718400123}`, "dimensions.model", "missing model"},
		{"missing customer", `{"meterApiName":"llm_requests","meterValue":1,"meterTimeInMillis":1771718400123,"dimensions":{"model":"m"}}`, "customerId", "missing customer id"},
		{"missing value", `{"customerId":"c","meterApiName":"llm_requests","meterTimeInMillis":1771718400123,"dimensions":{"model":"m"}}`, "meterValue", "missing meter value"},
		{"missing time", `{"customerId":"c","meterApiName":"llm_requests","meterValue":1,"dimensions":{"model":"m"}}`, "meterTimeInMillis", "missing event time"},
		{"seconds not ms", strings.Replace(meterRec("llm_requests", "1", ``), "1771718400123", "1771718400", 1), "meterTimeInMillis", "wrong unit?"},
		{"dimension not string", meterRec("llm_requests", "1", `,"n":1`), "dimensions.n", "expected a string value"},
		{"duplicate key", `{"customerId":"c","customerId":"d"}`, "customerId", "duplicate key"},
		{"missing meter", `{"customerId":"c"}`, "meterApiName", "missing meter name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantDecodeError(t, d, []byte(tc.msg), 0, tc.field, tc.reason)
		})
	}
	good := meterRec("llm_requests", "1", ``)
	wantDecodeError(t, d, []byte(good+"\n"+good+"\n"+meterRec("llm_foo", "1", ``)), 2, "meterApiName", "unknown meter")
}

func TestAutoDecoder(t *testing.T) {
	d := mustDecoder(t, FormatAuto, DecodeOptions{})
	for file, src := range map[string]Source{
		"examples/gateway_event.json":                     SourceGateway,
		"testdata/litellm_standard_logging_payload.json":  SourceLiteLLM,
		"testdata/openrouter_generation.json":             SourceOpenRouter,
		"testdata/openrouter_broadcast_webhook_otlp.json": SourceOpenRouter,
		"testdata/amberflo_meter_record.json":             SourceMeter,
	} {
		evs, err := d.Decode(nil, readTestdataFile(t, file))
		if err != nil || len(evs) == 0 || evs[0].Source != src {
			t.Errorf("%s: %v %d events", file, err, len(evs))
		}
	}
	wrapped := `{"customer_id":"c","response":` + string(readTestdata(t, "openrouter_completion_usage.json")) + `}`
	if ev := decodeOne(t, d, []byte(wrapped)); ev.Source != SourceOpenRouter {
		t.Errorf("wrapper: %v", ev.Source)
	}
	if ev := decodeOne(t, d, []byte("["+string(gw(`"usage":{"input":1}`))+"]")); ev.Source != SourceGateway {
		t.Errorf("gateway array: %v", ev.Source)
	}
	_, err := d.Decode(nil, []byte(`{"hello":"world"}`))
	if de, ok := err.(*DecodeError); !ok || de.Decoder != FormatAuto || !strings.Contains(de.Reason, "unrecognized message shape") {
		t.Errorf("unrecognized: %v", err)
	}
	// Errors name the decoder the message was taken for.
	_, err = d.Decode(nil, []byte(meterRec("llm_foo", "1", ``)))
	if de, ok := err.(*DecodeError); !ok || de.Decoder != FormatMeter {
		t.Errorf("meter error: %v", err)
	}
	if _, err := DecoderFor("csv", DecodeOptions{}); err == nil || !strings.Contains(err.Error(), "unknown decoder format") {
		t.Errorf("unknown format: %v", err)
	}
}
