package loadgen

import (
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// The encoders append compact JSON by hand: a generator that allocates per
// message could not outrun the broker it feeds. Field layouts follow the
// real payloads in /work/shared/data/payloads (see schemas/README.md).

const hexDigits = "0123456789abcdef"

// appendUUID writes 128 bits as 8-4-4-4-12 hex.
func appendUUID(b []byte, x [2]uint64) []byte {
	for i := 0; i < 32; i++ {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b = append(b, '-')
		}
		w := x[i/16]
		shift := uint(60 - 4*(i%16))
		b = append(b, hexDigits[(w>>shift)&0xf])
	}
	return b
}

// appendStr writes s as a JSON string (schemas.AppendJSONString).
func appendStr(b []byte, s string) []byte { return schemas.AppendJSONString(b, s) }

// appendCustomer writes the customer id: cust-000042.
func (g *Generator) appendCustomer(b []byte, c uint32) []byte {
	b = append(b, "cust-"...)
	var d [10]byte
	n := strconv.AppendUint(d[:0], uint64(c), 10)
	for i := len(n); i < g.custWidth; i++ {
		b = append(b, '0')
	}
	return append(b, n...)
}

// CustomerID returns the id of customer index c.
func (g *Generator) CustomerID(c uint32) string { return string(g.appendCustomer(nil, c)) }

// appendRespID writes the provider response id LiteLLM and meter senders use.
func appendRespID(b []byte, r *Request) []byte {
	return appendUUID(append(b, "chatcmpl-"...), r.RID)
}

// appendGatewayID writes the gateway event id: its own "gw-" id, or, for a
// request also sent through LiteLLM, the key the LiteLLM decoder derives.
func appendGatewayID(b []byte, r *Request) []byte {
	if r.SharedKey {
		return appendRespID(append(b, "litellm:"...), r)
	}
	return appendUUID(append(b, "gw-"...), r.RID)
}

func appendTimeMs(b []byte, ms int64) []byte {
	return time.UnixMilli(ms).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
}

// appendEpochSeconds writes ms as seconds with six decimals, LiteLLM's
// float startTime ("1771718400.123000").
func appendEpochSeconds(b []byte, ms int64) []byte {
	b = strconv.AppendInt(b, ms/1000, 10)
	frac := ms % 1000
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10), '0', '0', '0')
}

func appendCost(b []byte, c u128) []byte { return appendFixed(b, c, rating.PriceScale) }

func addU128(a, b u128) u128 {
	lo := a.lo + b.lo
	c := uint64(0)
	if lo < a.lo {
		c = 1
	}
	return u128{a.hi + b.hi + c, lo}
}

// appendGateway writes a gateway event (schemas/usage_event.v1.schema.json).
func (g *Generator) appendGateway(b []byte, r *Request, mal Malformation) []byte {
	m := &g.models[r.Model]
	b = append(b, `{"version":1,"id":"`...)
	b = appendGatewayID(b, r)
	b = append(b, `","time":"`...)
	b = appendTimeMs(b, r.TimeMs)
	b = append(b, '"')
	if mal != MalformedMissingCustomer {
		b = append(b, `,"customer_id":"`...)
		b = g.appendCustomer(b, r.Customer)
		b = append(b, '"')
	}
	b = append(b, `,"provider":`...)
	b = appendStr(b, m.provider)
	b = append(b, `,"model":`...)
	b = appendStr(b, m.name)
	b = append(b, `,"service_tier":"`...)
	b = append(b, r.Tier.String()...)
	b = append(b, `","dimensions":{"team":"`...)
	b = append(b, teams[r.Team]...)
	b = append(b, `","project":"`...)
	b = append(b, projects[r.Project]...)
	b = append(b, `"},"usage":{`...)
	first := true
	for u, n := range r.Quantities {
		if n == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, schemas.Unit(u).String()...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, n, 10)
	}
	in, out := g.requestCost(r)
	b = append(b, `},"reported_cost":"`...)
	b = appendCost(b, addU128(in, out))
	return append(b, `"}`...)
}

// liteLLMTier is the service tier as the provider's response reports it.
func liteLLMTier(provider string, t schemas.Tier) string {
	if t != schemas.TierStandard {
		return t.String()
	}
	switch provider {
	case "openai", "azure":
		return "default"
	}
	return ""
}

func appendNullOr(b []byte, null bool, f func([]byte) []byte) []byte {
	if null {
		return append(b, "null"...)
	}
	return f(b)
}

// appendLiteLLMUsage writes LiteLLM's Usage object: inclusive
// prompt_tokens (uncached + cache reads + cache writes) with the
// breakdown in prompt_tokens_details, completion_tokens including
// reasoning_tokens. Claude-family calls also carry the cache-creation
// split and the provider-kwarg copies LiteLLM puts at the top.
func appendLiteLLMUsage(b []byte, r *Request, claude bool) []byte {
	q := &r.Quantities
	cached, w5, w1 := q[schemas.UnitCachedInput], q[schemas.UnitCacheWrite5m], q[schemas.UnitCacheWrite1h]
	prompt := q[schemas.UnitInput] + cached + w5 + w1
	completion := q[schemas.UnitOutput] + q[schemas.UnitReasoning]
	b = append(b, `{"completion_tokens":`...)
	b = strconv.AppendInt(b, completion, 10)
	b = append(b, `,"prompt_tokens":`...)
	b = strconv.AppendInt(b, prompt, 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, prompt+completion, 10)
	b = append(b, `,"completion_tokens_details":{"accepted_prediction_tokens":null,"audio_tokens":null,"reasoning_tokens":`...)
	b = strconv.AppendInt(b, q[schemas.UnitReasoning], 10)
	b = append(b, `,"rejected_prediction_tokens":null,"text_tokens":`...)
	b = strconv.AppendInt(b, q[schemas.UnitOutput], 10)
	b = append(b, `,"image_tokens":null},"prompt_tokens_details":{"audio_tokens":null,"cached_tokens":`...)
	b = strconv.AppendInt(b, cached, 10)
	b = append(b, `,"text_tokens":null,"image_tokens":null`...)
	if claude {
		b = append(b, `,"cache_creation_tokens":`...)
		b = strconv.AppendInt(b, w5+w1, 10)
		b = append(b, `,"cache_creation_token_details":{"ephemeral_5m_input_tokens":`...)
		b = strconv.AppendInt(b, w5, 10)
		b = append(b, `,"ephemeral_1h_input_tokens":`...)
		b = strconv.AppendInt(b, w1, 10)
		b = append(b, `}},"cache_creation_input_tokens":`...)
		b = strconv.AppendInt(b, w5+w1, 10)
		b = append(b, `,"cache_read_input_tokens":`...)
		b = strconv.AppendInt(b, cached, 10)
		return append(b, '}')
	}
	return append(b, `}}`...)
}

// modelUUID is a stable deployment id for a model.
func modelUUID(key string) [2]uint64 {
	h := fnv.New128a()
	h.Write([]byte(key))
	var s [16]byte
	sum := h.Sum(s[:0])
	var x [2]uint64
	for i := 0; i < 16; i++ {
		x[i/8] = x[i/8]<<8 | uint64(sum[i])
	}
	return x
}

// appendLiteLLM writes one StandardLoggingPayload (LiteLLM's generic API
// callback with log_format "single"), shaped like the shared example.
func (g *Generator) appendLiteLLM(b []byte, r *Request, mal Malformation) []byte {
	m := &g.models[r.Model]
	q := &r.Quantities
	prompt := q[schemas.UnitInput] + q[schemas.UnitCachedInput] + q[schemas.UnitCacheWrite5m] + q[schemas.UnitCacheWrite1h]
	completion := q[schemas.UnitOutput] + q[schemas.UnitReasoning]
	in, out := g.requestCost(r)
	cost := addU128(in, out)
	latencyMs := 300 + int64(r.RID[1]%20_000)
	noCust := mal == MalformedMissingCustomer
	cust := func(b []byte) []byte {
		return append(g.appendCustomer(append(b, '"'), r.Customer), '"')
	}
	alias := func(b []byte) []byte {
		return append(append(append(b, '"'), projects[r.Project]...), `-key"`...)
	}
	teamID := func(b []byte) []byte {
		return append(append(append(b, `"team-`...), teams[r.Team]...), '"')
	}
	mid := modelUUID(m.key)

	b = append(b, `{"id":"`...)
	b = appendRespID(b, r)
	b = append(b, `","trace_id":"`...)
	b = appendUUID(b, [2]uint64{r.RID[1] ^ 0x9e3779b97f4a7c15, r.RID[0]})
	b = append(b, `","call_type":"acompletion","stream":false,"response_cost":`...)
	b = appendCost(b, cost)
	b = append(b, `,"cost_breakdown":{"input_cost":`...)
	b = appendCost(b, in)
	b = append(b, `,"output_cost":`...)
	b = appendCost(b, out)
	b = append(b, `,"total_cost":`...)
	b = appendCost(b, cost)
	b = append(b, `,"tool_usage_cost":0.0,"original_cost":`...)
	b = appendCost(b, cost)
	b = append(b, `,"discount_percent":0.0,"discount_amount":0.0},"response_cost_failure_debug_info":null,"status":"success","status_fields":{"llm_api_status":"success","guardrail_status":"not_run"},"custom_llm_provider":`...)
	b = appendStr(b, m.provider)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, prompt+completion, 10)
	b = append(b, `,"prompt_tokens":`...)
	b = strconv.AppendInt(b, prompt, 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, completion, 10)
	b = append(b, `,"startTime":`...)
	b = appendEpochSeconds(b, r.TimeMs)
	b = append(b, `,"endTime":`...)
	b = appendEpochSeconds(b, r.TimeMs+latencyMs)
	b = append(b, `,"completionStartTime":`...)
	b = appendEpochSeconds(b, r.TimeMs+latencyMs/3)
	b = append(b, `,"response_time":`...)
	b = appendEpochSeconds(b, latencyMs)
	b = append(b, `,"model_map_information":{"model_map_key":`...)
	b = appendStr(b, m.key)
	b = append(b, `,"model_map_value":{"key":`...)
	b = appendStr(b, m.key)
	b = append(b, `,"litellm_provider":`...)
	b = appendStr(b, m.mp.Provider)
	b = append(b, `,"mode":"chat"}},"model":`...)
	b = appendStr(b, m.name)
	b = append(b, `,"model_id":"`...)
	b = appendUUID(b, mid)
	b = append(b, `","model_group":`...)
	b = appendStr(b, m.name)
	b = append(b, `,"api_base":`...)
	b = appendStr(b, apiBase(m.provider))
	b = append(b, `,"metadata":{"user_api_key_hash":"`...)
	b = appendUUID(b, [2]uint64{uint64(r.Project) * 0x9e3779b97f4a7c15, uint64(r.Team) + 1})
	b = append(b, `","user_api_key_alias":`...)
	b = appendNullOr(b, noCust, alias)
	b = append(b, `,"user_api_key_spend":0.0,"user_api_key_max_budget":null,"user_api_key_budget_reset_at":null,"user_api_key_team_id":`...)
	b = appendNullOr(b, noCust, teamID)
	b = append(b, `,"user_api_key_org_id":null,"user_api_key_project_id":null,"user_api_key_user_id":null,"user_api_key_team_alias":"`...)
	b = append(b, teams[r.Team]...)
	b = append(b, `","user_api_key_user_email":null,"user_api_key_end_user_id":`...)
	b = appendNullOr(b, noCust, cust)
	b = append(b, `,"user_api_key_request_route":"/v1/chat/completions","user_api_key_auth_metadata":{},"spend_logs_metadata":null,"requester_ip_address":"","user_agent":"tariff-loadgen/1","requester_metadata":{},"requester_custom_headers":{},"prompt_management_metadata":null,"applied_guardrails":[],"mcp_tool_call_metadata":null,"vector_store_request_metadata":null,"usage_object":`...)
	b = appendLiteLLMUsage(b, r, m.claude)
	b = append(b, `,"cold_storage_object_key":null,"team_alias":null,"team_id":null},"cache_hit":null,"cache_key":null,"saved_cache_cost":0.0,"request_tags":[],"end_user":`...)
	if noCust {
		b = append(b, `""`...)
	} else {
		b = cust(b)
	}
	b = append(b, `,"requester_ip_address":"","user_agent":"tariff-loadgen/1","messages":[{"role":"user","content":"(prompt elided by tariff loadgen)"}],"response":{"id":"`...)
	b = appendRespID(b, r)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, (r.TimeMs+latencyMs)/1000, 10)
	b = append(b, `,"model":`...)
	b = appendStr(b, m.name)
	b = append(b, `,"object":"chat.completion","system_fingerprint":null,"choices":[{"finish_reason":"stop","index":0,"message":{"content":"(completion elided)","role":"assistant","tool_calls":null,"function_call":null,"provider_specific_fields":null}}],"usage":`...)
	b = appendLiteLLMUsage(b, r, m.claude)
	if t := liteLLMTier(m.provider, r.Tier); t != "" {
		b = append(b, `,"service_tier":"`...)
		b = append(b, t...)
		b = append(b, '"')
	}
	b = append(b, `},"error_str":null,"error_information":{"error_code":"","error_class":"","llm_provider":"","traceback":"","error_message":""},"model_parameters":{"max_tokens":4096},"hidden_params":{"model_id":"`...)
	b = appendUUID(b, mid)
	b = append(b, `","cache_key":null,"api_base":`...)
	b = appendStr(b, apiBase(m.provider))
	b = append(b, `,"response_cost":`...)
	b = appendCost(b, cost)
	b = append(b, `,"litellm_overhead_time_ms":`...)
	b = strconv.AppendInt(b, 5+int64(r.RID[0]%40), 10)
	b = append(b, `.0,"additional_headers":{},"batch_models":null,"litellm_model_name":`...)
	b = appendStr(b, m.name)
	return append(b, `,"usage_object":null},"guardrail_information":null,"standard_built_in_tools_params":{"web_search_options":null,"file_search":null}}`...)
}

// meterTierDims are the tier and batch dimension values of a tier.
func meterTierDims(t schemas.Tier) (tier, batch string) {
	switch t {
	case schemas.TierBatch:
		return "n", "y"
	case schemas.TierFlex:
		return "flex", "n"
	case schemas.TierPriority:
		return "priority", "n"
	}
	return "n", "n"
}

// meterRecord names the meter and unit dimensions of one unit.
func meterRecord(u schemas.Unit) (meter, typ, cache, ttl string) {
	switch u {
	case schemas.UnitRequests:
		return "llm_api_call", "", "", ""
	case schemas.UnitInput:
		return "llm_text_tokens", "in", "n", ""
	case schemas.UnitCachedInput:
		return "llm_text_tokens", "in", "r", ""
	case schemas.UnitCacheWrite5m:
		return "llm_text_tokens", "in", "c", ""
	case schemas.UnitCacheWrite1h:
		return "llm_text_tokens", "in", "c", "1h"
	case schemas.UnitOutput:
		return "llm_text_tokens", "out", "n", ""
	case schemas.UnitReasoning:
		return "llm_reasoning_tokens", "out", "", ""
	}
	panic("BUG: loadgen writes no meter record for " + u.String())
}

// appendMeter writes one request as an Amberflo-style array of meter
// records: the call, its latency (which yields no event), and one record
// per token bucket, all under the request's uniqueId.
func (g *Generator) appendMeter(b []byte, r *Request, mal Malformation) []byte {
	m := &g.models[r.Model]
	tier, batch := meterTierDims(r.Tier)
	rec := func(b []byte, meter, typ, cache, ttl string, v int64) []byte {
		b = append(b, '{')
		if mal != MalformedMissingCustomer {
			b = append(b, `"customerId":"`...)
			b = g.appendCustomer(b, r.Customer)
			b = append(b, `",`...)
		}
		b = append(b, `"meterApiName":"`...)
		b = append(b, meter...)
		b = append(b, `","meterValue":`...)
		b = strconv.AppendInt(b, v, 10)
		b = append(b, `,"meterTimeInMillis":`...)
		b = strconv.AppendInt(b, r.TimeMs, 10)
		b = append(b, `,"uniqueId":"`...)
		b = appendRespID(b, r)
		b = append(b, `","dimensions":{`...)
		if typ != "" {
			b = append(b, `"type":"`...)
			b = append(b, typ...)
			b = append(b, `",`...)
		}
		if cache != "" {
			b = append(b, `"cache":"`...)
			b = append(b, cache...)
			b = append(b, `",`...)
		}
		if ttl != "" {
			b = append(b, `"cache_ttl":"`...)
			b = append(b, ttl...)
			b = append(b, `",`...)
		}
		b = append(b, `"model":`...)
		b = appendStr(b, m.name)
		b = append(b, `,"provider":`...)
		b = appendStr(b, m.provider)
		b = append(b, `,"tier":"`...)
		b = append(b, tier...)
		b = append(b, `","batch":"`...)
		b = append(b, batch...)
		b = append(b, `","team":"`...)
		b = append(b, teams[r.Team]...)
		b = append(b, `","project":"`...)
		b = append(b, projects[r.Project]...)
		return append(b, `"}}`...)
	}
	b = append(b, '[')
	first := true
	for _, u := range meterUnits {
		n := r.Quantities[u]
		if n == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		meter, typ, cache, ttl := meterRecord(u)
		b = rec(b, meter, typ, cache, ttl, n)
		if u == schemas.UnitRequests {
			b = append(b, ',')
			b = rec(b, "llm_api_call_ms", "", "", "", 300+int64(r.RID[1]%20_000))
		}
	}
	return append(b, ']')
}

// appendOpenRouter writes an OpenRouter chat completion response wrapped
// with its customer, event time and dimensions (schemas/openrouter.go):
// OpenRouter echoes no customer, so an integration forwarding its
// responses names one. Usage is OpenRouter's inclusive form: prompt_tokens
// includes cache reads and writes, completion_tokens includes reasoning;
// usage.cost is what OpenRouter charged (reconciled, never billed).
func (g *Generator) appendOpenRouter(b []byte, r *Request, mal Malformation) []byte {
	m := &g.models[r.Model]
	q := &r.Quantities
	cached, w := q[schemas.UnitCachedInput], q[schemas.UnitCacheWrite5m]
	prompt := q[schemas.UnitInput] + cached + w
	completion := q[schemas.UnitOutput] + q[schemas.UnitReasoning]
	in, out := g.requestCost(r)
	latencyMs := 300 + int64(r.RID[1]%20_000)
	b = append(b, `{"customer_id":"`...)
	if mal != MalformedMissingCustomer {
		b = g.appendCustomer(b, r.Customer)
	}
	b = append(b, `","time":"`...)
	b = appendTimeMs(b, r.TimeMs)
	b = append(b, `","dimensions":{"team":"`...)
	b = append(b, teams[r.Team]...)
	b = append(b, `","project":"`...)
	b = append(b, projects[r.Project]...)
	b = append(b, `"},"response":{"id":"`...)
	b = appendOpenRouterID(b, r)
	b = append(b, `","provider":`...)
	b = appendStr(b, openRouterUpstream(m.name))
	b = append(b, `,"model":`...)
	b = appendStr(b, m.name)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, (r.TimeMs+latencyMs)/1000, 10)
	b = append(b, `,"choices":[{"logprobs":null,"finish_reason":"stop","native_finish_reason":"stop","index":0,"message":{"role":"assistant","content":"(completion elided)","refusal":null,"reasoning":null}}],"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, prompt, 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, completion, 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, prompt+completion, 10)
	b = append(b, `,"cost":`...)
	b = appendCost(b, addU128(in, out))
	b = append(b, `,"is_byok":false,"prompt_tokens_details":{"cached_tokens":`...)
	b = strconv.AppendInt(b, cached, 10)
	b = append(b, `,"cache_write_tokens":`...)
	b = strconv.AppendInt(b, w, 10)
	b = append(b, `,"audio_tokens":0},"cost_details":{"upstream_inference_cost":null},"completion_tokens_details":{"reasoning_tokens":`...)
	b = strconv.AppendInt(b, q[schemas.UnitReasoning], 10)
	return append(b, `,"image_tokens":0}}}}`...)
}

// appendOpenRouterID writes OpenRouter's generation id, "gen-" and 128
// bits; its decoder's idempotency key is "openrouter:" + it.
func appendOpenRouterID(b []byte, r *Request) []byte {
	return appendUUID(append(b, "gen-"...), r.RID)
}

// openRouterUpstream is the provider name OpenRouter reports for a slug's
// vendor (informational; the decoder bills OpenRouter's own price).
func openRouterUpstream(slug string) string {
	vendor, _, _ := strings.Cut(slug, "/")
	switch vendor {
	case "anthropic":
		return "Anthropic"
	case "openai":
		return "OpenAI"
	case "google":
		return "Google"
	case "x-ai":
		return "xAI"
	case "deepseek":
		return "DeepSeek"
	case "mistralai":
		return "Mistral"
	}
	return "Together"
}
