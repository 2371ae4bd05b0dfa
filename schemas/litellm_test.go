package schemas

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// slp builds a minimal StandardLoggingPayload around extra fields.
func slp(extra string) []byte {
	return []byte(`{"id":"call-1","model":"gpt-5","custom_llm_provider":"openai","startTime":1771718400.5,"end_user":"cust-1"` + extra + `}`)
}

func TestLiteLLMSharedPayload(t *testing.T) {
	d := mustDecoder(t, FormatLiteLLM, DecodeOptions{})
	msg := readTestdata(t, "litellm_standard_logging_payload.json")
	ev := decodeOne(t, d, msg)
	want := sonnetBuckets
	want[UnitRequests] = 1
	if ev.Quantities != want {
		t.Errorf("quantities\n got %v\nwant %v", ev.Quantities, want)
	}
	if ev.ID != "litellm:chatcmpl-5f1c2a7e-3b9d-4c61-9a0e-7d2b8e4f1a90" || ev.CustomerID != "customer-acme-001" ||
		ev.Provider != "anthropic" || ev.Model != "claude-sonnet-4-5-20250929" || ev.Tier != TierStandard ||
		ev.Source != SourceLiteLLM {
		t.Errorf("fields: %+v", ev)
	}
	// startTime 1771718400.123456 is exact to the microsecond (no float64).
	if wantT := time.Unix(1771718400, 123456000).UTC(); !ev.Time.Equal(wantT) {
		t.Errorf("time %v, want %v", ev.Time, wantT)
	}
	if !ev.ReportedCost.Valid || ev.ReportedCost.Decimal.String() != "0.02025" {
		t.Errorf("cost %v", ev.ReportedCost)
	}
	wantDims := []Dimension{{"team", "search"}, {"api_key_alias", "search-backend-prod"}, {"model_group", "claude-sonnet-4-5"}}
	if fmt.Sprint(ev.Dimensions) != fmt.Sprint(wantDims) {
		t.Errorf("dimensions %v, want %v", ev.Dimensions, wantDims)
	}

	// The webhook's three log formats carry the same payloads.
	two := strings.Replace(string(msg), "chatcmpl-5f1c2a7e", "chatcmpl-second", 1)
	compact := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for name, m := range map[string]string{
		"json_array": "[" + string(msg) + "," + two + "]",
		"ndjson":     compact(string(msg)) + "\n" + compact(two) + "\n",
	} {
		evs, err := d.Decode(nil, []byte(m))
		if err != nil || len(evs) != 2 || evs[0].Quantities != want || evs[1].ID != "litellm:chatcmpl-second-3b9d-4c61-9a0e-7d2b8e4f1a90" {
			t.Errorf("%s: %v, %d events", name, err, len(evs))
		}
	}
}

func TestLiteLLMUsage(t *testing.T) {
	objs := readTestdata(t, "litellm_usage_object.json")
	openaiRouted := string(jsonPath(t, objs, "openai_routed_reasoning_model"))
	anthRouted := string(jsonPath(t, objs, "anthropic_routed_with_prompt_caching"))
	openaiBuckets := qty(map[Unit]int64{UnitInput: 1114, UnitCachedInput: 4096, UnitOutput: 426, UnitReasoning: 1408, UnitRequests: 1})
	sonnet := sonnetBuckets
	sonnet[UnitRequests] = 1

	tests := []struct {
		name  string
		extra string
		want  [NumUnits]int64
		tier  Tier
	}{
		{"openai routed, metadata.usage_object", `,"metadata":{"usage_object":` + openaiRouted + `}`, openaiBuckets, TierStandard},
		{"anthropic routed, metadata.usage_object", `,"metadata":{"usage_object":` + anthRouted + `}`, sonnet, TierStandard},
		{"usage_object preferred over response.usage", `,"metadata":{"usage_object":` + anthRouted + `},"response":{"usage":` + openaiRouted + `}`, sonnet, TierStandard},
		{"response.usage when usage_object is null", `,"metadata":{"usage_object":null},"response":{"usage":` + openaiRouted + `}`, openaiBuckets, TierStandard},
		{"hidden_params.usage_object", `,"hidden_params":{"usage_object":` + anthRouted + `}`, sonnet, TierStandard},
		{"top-level counts only", `,"prompt_tokens":100,"completion_tokens":20`,
			qty(map[Unit]int64{UnitInput: 100, UnitOutput: 20, UnitRequests: 1}), TierStandard},
		{"provider kwargs only (no details)", `,"metadata":{"usage_object":{"prompt_tokens":11200,"completion_tokens":450,"cache_creation_input_tokens":2000,"cache_read_input_tokens":8000}}`,
			qty(map[Unit]int64{UnitInput: 1200, UnitCachedInput: 8000, UnitCacheWrite5m: 2000, UnitOutput: 450, UnitRequests: 1}), TierStandard},
		{"1h cache writes", `,"metadata":{"usage_object":{"prompt_tokens":3000,"completion_tokens":1,"prompt_tokens_details":{"cache_creation_tokens":2000,"cache_creation_token_details":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1500}}}}`,
			qty(map[Unit]int64{UnitInput: 1000, UnitCacheWrite5m: 500, UnitCacheWrite1h: 1500, UnitOutput: 1, UnitRequests: 1}), TierStandard},
		{"audio and image", `,"metadata":{"usage_object":{"prompt_tokens":300,"completion_tokens":200,"prompt_tokens_details":{"audio_tokens":100,"image_tokens":50},"completion_tokens_details":{"audio_tokens":120,"image_tokens":30,"reasoning_tokens":10}}}`,
			qty(map[Unit]int64{UnitInput: 150, UnitAudioInput: 100, UnitImageInput: 50, UnitOutput: 40, UnitAudioOutput: 120, UnitImageOutput: 30, UnitReasoning: 10, UnitRequests: 1}), TierStandard},
		{"web search", `,"metadata":{"usage_object":{"prompt_tokens":10,"completion_tokens":1,"server_tool_use":{"web_search_requests":2}}}`,
			qty(map[Unit]int64{UnitInput: 10, UnitOutput: 1, UnitWebSearch: 2, UnitRequests: 1}), TierStandard},
		{"numbers as strings", `,"metadata":{"usage_object":{"prompt_tokens":"11200","completion_tokens":"450","prompt_tokens_details":{"cached_tokens":"8000","cache_creation_tokens":"2000"},"completion_tokens_details":{"reasoning_tokens":"120","audio_tokens":"None"}}},"response_cost":"0.02025"`,
			sonnet, TierStandard},
		{"tier from response", `,"prompt_tokens":1,"completion_tokens":1,"response":{"service_tier":"flex"}`,
			qty(map[Unit]int64{UnitInput: 1, UnitOutput: 1, UnitRequests: 1}), TierFlex},
		{"failure with tokens", `,"status":"failure","prompt_tokens":5,"completion_tokens":0`,
			qty(map[Unit]int64{UnitInput: 5}), TierStandard},
	}
	d := mustDecoder(t, FormatLiteLLM, DecodeOptions{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := decodeOne(t, d, slp(tc.extra))
			if ev.Quantities != tc.want {
				t.Errorf("quantities\n got %v\nwant %v", ev.Quantities, tc.want)
			}
			if ev.Tier != tc.tier {
				t.Errorf("tier %v, want %v", ev.Tier, tc.tier)
			}
		})
	}

	// A failed call that reports tokens keeps a distinct key; one without
	// tokens produces nothing.
	ev := decodeOne(t, d, slp(`,"status":"failure","prompt_tokens":5,"completion_tokens":0`))
	if ev.ID != "litellm:call-1:failure" {
		t.Errorf("failure id %q", ev.ID)
	}
	evs, err := d.Decode(nil, slp(`,"status":"failure","prompt_tokens":0,"completion_tokens":0`))
	if err != nil || len(evs) != 0 {
		t.Errorf("zero-token failure: %v %v", evs, err)
	}
	// startTime as a string: epoch seconds, or a timestamp.
	for in, want := range map[string]time.Time{
		`"1771718400.25"`:             time.UnixMilli(1771718400250),
		`"2026-02-22T00:00:00+00:00"`: time.Unix(1771718400, 0),
		`1.7717184e9`:                 time.Unix(1771718400, 0),
	} {
		ev := decodeOne(t, d, []byte(`{"id":"x","model":"m","end_user":"c","prompt_tokens":1,"startTime":`+in+`}`))
		if !ev.Time.Equal(want) {
			t.Errorf("startTime %s: %v, want %v", in, ev.Time, want)
		}
	}
}

func TestLiteLLMCustomerFields(t *testing.T) {
	base := `{"id":"x","model":"m","startTime":1771718400,"prompt_tokens":1,"completion_tokens":1,` +
		`"metadata":{"user_api_key_alias":"alias-1","user_api_key_team_id":"team-1","user_api_key_end_user_id":%s,` +
		`"requester_metadata":{"tenant":"tenant-9"},"tenant_id":42}%s}`
	tests := []struct {
		name   string
		fields []string
		endID  string
		top    string
		want   string
	}{
		{"end_user first", nil, `"eu-1"`, `,"end_user":"cust-top"`, "cust-top"},
		{"end_user empty falls through", nil, `"eu-1"`, `,"end_user":""`, "eu-1"},
		{"then key alias", nil, `null`, ``, "alias-1"},
		{"requester metadata", []string{"metadata.requester_metadata.tenant"}, `null`, ``, "tenant-9"},
		{"numeric metadata value", []string{"metadata.tenant_id"}, `null`, ``, "42"},
		{"team id", []string{"metadata.user_api_key_team_id"}, `"eu-1"`, ``, "team-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := mustDecoder(t, FormatLiteLLM, DecodeOptions{LiteLLMCustomerFields: tc.fields})
			ev := decodeOne(t, d, []byte(fmt.Sprintf(base, tc.endID, tc.top)))
			if ev.CustomerID != tc.want {
				t.Errorf("customer %q, want %q", ev.CustomerID, tc.want)
			}
		})
	}
	d := mustDecoder(t, FormatLiteLLM, DecodeOptions{LiteLLMCustomerFields: []string{"metadata.requester_metadata.org"}})
	wantDecodeError(t, d, []byte(fmt.Sprintf(base, `null`, ``)), 0, "metadata.requester_metadata.org",
		"missing customer id: none of metadata.requester_metadata.org is set")
	if _, err := DecoderFor(FormatLiteLLM, DecodeOptions{LiteLLMCustomerFields: []string{"metadata..x"}}); err == nil {
		t.Error("bad path accepted")
	}
}

func TestLiteLLMLegacy(t *testing.T) {
	pydanticUsage := `completion_tokens=450 prompt_tokens=11200 total_tokens=11650 completion_tokens_details=CompletionTokensDetailsWrapper(accepted_prediction_tokens=None, audio_tokens=None, reasoning_tokens=120, rejected_prediction_tokens=None, text_tokens=330) prompt_tokens_details=PromptTokensDetailsWrapper(audio_tokens=None, cached_tokens=8000, text_tokens=None, image_tokens=None, cache_creation_tokens=2000, cache_creation_token_details=CacheCreationTokenDetails(ephemeral_5m_input_tokens=2000, ephemeral_1h_input_tokens=0)) cache_creation_input_tokens=2000 cache_read_input_tokens=8000`
	reprUsage := `Usage(completion_tokens=450, prompt_tokens=11200, total_tokens=11650, completion_tokens_details=CompletionTokensDetailsWrapper(reasoning_tokens=120), prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=8000, cache_creation_tokens=2000))`
	dictUsage := `{'completion_tokens': 450, 'prompt_tokens': 11200, 'total_tokens': 11650, 'completion_tokens_details': {'reasoning_tokens': 120}, 'prompt_tokens_details': {'cached_tokens': 8000}, 'cache_creation_input_tokens': 2000}`
	metadata := `{'user_api_key_alias': 'search-backend-prod', 'user_api_key_team_alias': 'search', 'user_api_key_end_user_id': 'customer-acme-001', 'headers': {'user-agent': 'curl/8.5.0', "it's": "x\\ny"}, 'cb': <function cb at 0x7f3a>, 'when': datetime.datetime(2026, 2, 22, 0, 0), 'tags': ['a', ('b', 1)], 'n': -1.5e3, 'ok': True}`
	legacy := func(user, usage string) []byte {
		return []byte(`{"id":"chatcmpl-legacy","call_type":"acompletion","cache_hit":"None","startTime":"2026-02-22 00:00:00.123456",` +
			`"endTime":"2026-02-22 00:00:06.654321","model":"claude-sonnet-4-5-20250929","user":"` + user + `","modelParameters":"{'max_tokens': 4096}",` +
			`"messages":"[{'role': 'user', 'content': 'hi'}]","response":"ModelResponse(id='chatcmpl-legacy')","usage":"` + usage + `",` +
			`"metadata":"` + strings.ReplaceAll(metadata, `"`, `\"`) + `","cost":"0.02025"}`)
	}
	want := sonnetBuckets
	want[UnitRequests] = 1
	d := mustDecoder(t, FormatLiteLLM, DecodeOptions{})
	for name, usage := range map[string]string{"pydantic str": pydanticUsage, "repr": reprUsage, "dict": dictUsage} {
		t.Run(name, func(t *testing.T) {
			ev := decodeOne(t, d, legacy("end-user-7", usage))
			if ev.Quantities != want {
				t.Errorf("quantities\n got %v\nwant %v", ev.Quantities, want)
			}
			if ev.ID != "litellm:chatcmpl-legacy" || ev.CustomerID != "end-user-7" || ev.ReportedCost.Decimal.String() != "0.02025" ||
				!ev.Time.Equal(time.Date(2026, 2, 22, 0, 0, 0, 123456000, time.UTC)) {
				t.Errorf("fields %+v", ev)
			}
			if fmt.Sprint(ev.Dimensions) != "[{team search} {api_key_alias search-backend-prod}]" {
				t.Errorf("dimensions %v", ev.Dimensions)
			}
		})
	}
	// No user: the metadata repr supplies the end user id.
	ev := decodeOne(t, d, legacy("", pydanticUsage))
	if ev.CustomerID != "customer-acme-001" {
		t.Errorf("customer from metadata %q", ev.CustomerID)
	}
	// The legacy datetime is naive: the configured zone applies.
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err == nil {
		d := mustDecoder(t, FormatLiteLLM, DecodeOptions{LiteLLMLegacyTimeZone: berlin})
		if ev := decodeOne(t, d, legacy("u", pydanticUsage)); !ev.Time.Equal(time.Date(2026, 2, 21, 23, 0, 0, 123456000, time.UTC)) {
			t.Errorf("Berlin time %v", ev.Time)
		}
	}
	wantDecodeError(t, d, legacy("u", `completion_tokens=450 prompt_tokens=(`), 0, "usage", "legacy usage repr: unexpected end of repr")
	wantDecodeError(t, d, legacy("u", `completion_tokens='x' prompt_tokens=1`), 0, "usage.completion_tokens", "expected an integer count")
	wantDecodeError(t, d, legacy("u", `total_tokens=5`), 0, "usage", "neither prompt_tokens nor completion_tokens")
}

func TestLiteLLMErrors(t *testing.T) {
	d := mustDecoder(t, FormatLiteLLM, DecodeOptions{})
	tests := []struct {
		name, msg, field, reason string
	}{
		{"missing id", `{"model":"m","startTime":1771718400,"end_user":"c","prompt_tokens":1}`, "id", "missing payload id"},
		{"missing model", `{"id":"x","startTime":1771718400,"end_user":"c","prompt_tokens":1}`, "model", "missing model"},
		{"missing customer", `{"id":"x","model":"m","startTime":1771718400,"prompt_tokens":1}`, "end_user",
			"missing customer id: none of end_user, metadata.user_api_key_end_user_id, metadata.user_api_key_alias, metadata.user_api_key_team_id is set"},
		{"missing time", `{"id":"x","model":"m","end_user":"c","prompt_tokens":1}`, "startTime", "missing event time"},
		{"time in ms", `{"id":"x","model":"m","end_user":"c","startTime":1771718400123,"prompt_tokens":1}`, "startTime", "out of range"},
		{"time bool", `{"id":"x","model":"m","end_user":"c","startTime":true,"prompt_tokens":1}`, "startTime", "got a boolean"},
		{"no usage", string(slp(``)), "metadata.usage_object", "no usage"},
		{"usage not object", string(slp(`,"metadata":{"usage_object":"x"}`)), "metadata.usage_object", "expected an object, got a string"},
		{"negative", string(slp(`,"metadata":{"usage_object":{"prompt_tokens":-1,"completion_tokens":1}}`)), "metadata.usage_object.prompt_tokens", "negative count -1"},
		{"fractional", string(slp(`,"prompt_tokens":1.5`)), "prompt_tokens", "fractional"},
		{"cached > prompt", string(slp(`,"metadata":{"usage_object":{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":20}}}`)),
			"metadata.usage_object.prompt_tokens", "is less than its cached"},
		{"split mismatch", string(slp(`,"metadata":{"usage_object":{"prompt_tokens":3000,"completion_tokens":1,"prompt_tokens_details":{"cache_creation_tokens":2000,"cache_creation_token_details":{"ephemeral_5m_input_tokens":5}}}}`)),
			"metadata.usage_object.prompt_tokens_details.cache_creation_tokens", "do not match"},
		{"duplicate key on a wanted path", string(slp(`,"metadata":{"usage_object":{"prompt_tokens":1,"prompt_tokens":2}}`)), "metadata.usage_object.prompt_tokens", "duplicate key"},
		{"unknown tier", string(slp(`,"prompt_tokens":1,"service_tier":"gold"`)), "service_tier", "expected one of standard"},
		{"negative cost", string(slp(`,"prompt_tokens":1,"response_cost":-0.5`)), "response_cost", "negative amount"},
		{"malformed", `{"id":"x",`, "", "expected a string key"},
		{"malformed in skipped field", string(slp(`,"messages":[{"role":"user","content":"\q"}]`)), "", "invalid escape"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantDecodeError(t, d, []byte(tc.msg), 0, tc.field, tc.reason)
		})
	}
	// The record index is reported for arrays.
	good := string(slp(`,"prompt_tokens":1`))
	wantDecodeError(t, d, []byte("["+good+","+good+`,{"id":"y"}]`), 2, "model", "missing model")
}
