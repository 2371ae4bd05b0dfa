package schemas

import (
	"strings"

	"github.com/shopspring/decimal"
)

// LiteLLM StandardLoggingPayload decoder.
//
// A message is what LiteLLM's generic API callback POSTs: a JSON array of
// payloads (log_format json_array, the default), NDJSON (ndjson) or one
// object (single). Also accepted: the legacy v1 payload
// (litellm.generic_api_use_v1) in which every value went through Python's
// str(), see litellm_legacy.go.
//
// Token convention: LiteLLM normalizes every provider to OpenAI's inclusive
// form. prompt_tokens includes cache reads (prompt_tokens_details.cached_tokens
// or cache_read_input_tokens) and cache writes
// (prompt_tokens_details.cache_creation_tokens or cache_creation_input_tokens,
// split 5m/1h by cache_creation_token_details when present), and audio and
// image input; completion_tokens includes reasoning, audio and image output.
// The usage object is read from metadata.usage_object, else
// hidden_params.usage_object, else response.usage, else the top-level
// prompt_tokens / completion_tokens (no breakdown: all input, all output).
//
// Idempotency key: "litellm:" + payload id. LiteLLM sets id to the
// provider's response id (or its call id), which is the same on every retry
// of the webhook, so retries deduplicate. The record's position in the batch
// is not part of the key: batches are re-formed on retry. A failed call
// ("status": "failure") that still reports tokens gets "litellm:<id>:failure",
// so that it cannot shadow a later success under the same call id; a failed
// call with no tokens produces no event (there is nothing to bill).
//
// Each successful payload is one request: requests = 1.

const liteLLMName = "litellm"

type liteLLMDecoder struct {
	opts  DecodeOptions
	paths pathSet

	id, callType, status, provider, model, start, cost, tier, respTier, hiddenTier int
	promptTop, completionTop                                                       int
	usages                                                                         [3]usageSlots // preference order
	customers                                                                      []int
	dims                                                                           []int
	// legacy v1
	legacyUsage, legacyCost, legacyUser, legacyMetadata int
}

// usageSlots are the slots of one inclusive (OpenAI-style, LiteLLM Usage)
// usage object.
type usageSlots struct {
	obj                         int
	fields                      [iuNumFields]int
	cacheReadTop, cacheWriteTop int
	topWrite5m, topWrite1h      int
	names                       [iuNumFields]string
}

func addUsagePaths(p *pathSet, prefix string) usageSlots {
	u := usageSlots{obj: p.add(prefix)}
	add := func(f int, path string) {
		u.fields[f] = p.add(prefix + "." + path)
		u.names[f] = prefix + "." + path
	}
	add(iuPrompt, "prompt_tokens")
	add(iuCompletion, "completion_tokens")
	add(iuCachedRead, "prompt_tokens_details.cached_tokens")
	add(iuCacheWrite, "prompt_tokens_details.cache_creation_tokens")
	add(iuCacheWrite5m, "prompt_tokens_details.cache_creation_token_details.ephemeral_5m_input_tokens")
	add(iuCacheWrite1h, "prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens")
	add(iuAudioIn, "prompt_tokens_details.audio_tokens")
	add(iuImageIn, "prompt_tokens_details.image_tokens")
	add(iuReasoning, "completion_tokens_details.reasoning_tokens")
	add(iuAudioOut, "completion_tokens_details.audio_tokens")
	add(iuImageOut, "completion_tokens_details.image_tokens")
	add(iuWebSearch, "server_tool_use.web_search_requests")
	u.cacheReadTop = p.add(prefix + ".cache_read_input_tokens")
	u.cacheWriteTop = p.add(prefix + ".cache_creation_input_tokens")
	u.topWrite5m = p.add(prefix + ".cache_creation_token_details.ephemeral_5m_input_tokens")
	u.topWrite1h = p.add(prefix + ".cache_creation_token_details.ephemeral_1h_input_tokens")
	return u
}

func newLiteLLMDecoder(opts DecodeOptions) *liteLLMDecoder {
	d := &liteLLMDecoder{opts: opts}
	p := &d.paths
	d.id = p.add("id")
	d.callType = p.add("call_type")
	d.status = p.add("status")
	d.provider = p.add("custom_llm_provider")
	d.model = p.add("model")
	d.start = p.add("startTime")
	d.cost = p.add("response_cost")
	d.tier = p.add("service_tier")
	d.respTier = p.add("response.service_tier")
	d.hiddenTier = p.add("hidden_params.service_tier")
	d.promptTop = p.add("prompt_tokens")
	d.completionTop = p.add("completion_tokens")
	d.usages[0] = addUsagePaths(p, "metadata.usage_object")
	d.usages[1] = addUsagePaths(p, "hidden_params.usage_object")
	d.usages[2] = addUsagePaths(p, "response.usage")
	for _, c := range opts.LiteLLMCustomerFields {
		d.customers = append(d.customers, p.add(c))
	}
	for _, dim := range opts.LiteLLMDimensions {
		d.dims = append(d.dims, p.add(dim.Path))
	}
	d.legacyUsage = p.add("usage")
	d.legacyCost = p.add("cost")
	d.legacyUser = p.add("user")
	d.legacyMetadata = p.add("metadata")
	return d
}

func (d *liteLLMDecoder) Name() string { return liteLLMName }

func (d *liteLLMDecoder) Decode(dst []UsageEvent, msg []byte) ([]UsageEvent, error) {
	n0 := len(dst)
	s := scanner{data: msg}
	vp := d.paths.getVals()
	defer d.paths.putVals(vp)
	vals := *vp
	idx, err := s.records(func(idx int) error {
		clear(vals)
		if f, err := d.paths.extract(&s, vals); err != nil {
			return errAt(liteLLMName, idx, f, err)
		}
		var ev UsageEvent
		ok, err := d.event(idx, vals, &ev)
		if err != nil {
			return err
		}
		if ok {
			dst = append(dst, ev)
		}
		return nil
	})
	if err != nil {
		return dst[:n0], errAt(liteLLMName, idx, "", err)
	}
	return dst, nil
}

func llErr(idx int, field, reason string) error {
	return &DecodeError{Decoder: liteLLMName, Index: idx, Field: field, Reason: reason}
}

// event builds one event from a payload's extracted values. It reports false
// for a payload that carries nothing to bill (a failed call with no tokens).
func (d *liteLLMDecoder) event(idx int, v []rawValue, ev *UsageEvent) (bool, error) {
	if v[d.legacyUsage].present() || v[d.legacyCost].present() {
		return d.legacyEvent(idx, v, ev)
	}
	id, reason := v[d.id].text(false)
	if reason != "" {
		return false, llErr(idx, "id", reason)
	}
	if id == "" {
		return false, llErr(idx, "id", "missing payload id")
	}
	if err := d.common(idx, v, ev, ""); err != nil {
		return false, err
	}
	// Usage: the first usage object present, else the top-level counts.
	found := false
	for i := range d.usages {
		u := &d.usages[i]
		if !v[u.obj].present() {
			continue
		}
		if v[u.obj].kind != kindObject {
			return false, llErr(idx, d.paths.names[u.obj], "expected an object, got "+kindName(v[u.obj].kind))
		}
		if err := d.usageFrom(idx, v, u, &ev.Quantities); err != nil {
			return false, err
		}
		found = true
		break
	}
	if !found {
		if !v[d.promptTop].present() && !v[d.completionTop].present() {
			return false, llErr(idx, "metadata.usage_object", "no usage: none of metadata.usage_object, hidden_params.usage_object, response.usage, prompt_tokens present")
		}
		for _, f := range [...]struct {
			slot int
			unit Unit
			name string
		}{{d.promptTop, UnitInput, "prompt_tokens"}, {d.completionTop, UnitOutput, "completion_tokens"}} {
			n, reason := v[f.slot].count(true)
			if reason != "" {
				return false, llErr(idx, f.name, reason)
			}
			ev.Quantities[f.unit] = n
		}
	}
	status, _ := v[d.status].text(false)
	if status == "failure" {
		if ev.Quantities == ([NumUnits]int64{}) {
			return false, nil
		}
		id += ":failure"
	} else {
		ev.Quantities[UnitRequests] = 1
	}
	ev.ID = "litellm:" + id
	return true, nil
}

// common fills the fields shared by the current and legacy payloads: model,
// provider, time, cost, tier, customer, dimensions. timeSlot overrides the
// time's naive zone for legacy payloads.
func (d *liteLLMDecoder) common(idx int, v []rawValue, ev *UsageEvent, legacy string) error {
	ev.Source = SourceLiteLLM
	var reason string
	if ev.Model, reason = v[d.model].text(false); reason != "" {
		return llErr(idx, "model", reason)
	}
	if ev.Model == "" {
		return llErr(idx, "model", "missing model")
	}
	if ev.Provider, reason = v[d.provider].text(false); reason != "" {
		return llErr(idx, "custom_llm_provider", reason)
	}
	if ev.Time, reason = v[d.start].epochOrTimestamp(0, "seconds", d.opts.LiteLLMLegacyTimeZone); reason != "" {
		return llErr(idx, "startTime", reason)
	}
	costSlot, costName := d.cost, "response_cost"
	if legacy != "" {
		costSlot, costName = d.legacyCost, "cost"
	}
	raw, reason := v[costSlot].costText()
	if reason != "" {
		return llErr(idx, costName, reason)
	}
	if raw != nil {
		c, reason := parseCost(raw)
		if reason != "" {
			return llErr(idx, costName, reason)
		}
		ev.ReportedCost = decimal.NullDecimal{Decimal: c, Valid: true}
	}
	for _, slot := range [...]int{d.tier, d.respTier, d.hiddenTier} {
		t, reason := v[slot].text(false)
		if reason != "" {
			return llErr(idx, d.paths.names[slot], reason)
		}
		if t == "" || t == "None" {
			continue
		}
		tier, err := ParseTier(t)
		if err != nil {
			return llErr(idx, d.paths.names[slot], err.Error())
		}
		ev.Tier = tier
		break
	}
	if legacy == "" {
		for i, slot := range d.customers {
			c, reason := v[slot].text(true)
			if reason != "" {
				return llErr(idx, d.opts.LiteLLMCustomerFields[i], reason)
			}
			if c != "" {
				ev.CustomerID = c
				break
			}
		}
		if ev.CustomerID == "" {
			return llErr(idx, d.opts.LiteLLMCustomerFields[0], "missing customer id: none of "+strings.Join(d.opts.LiteLLMCustomerFields, ", ")+" is set")
		}
		for i, slot := range d.dims {
			val, reason := v[slot].text(true)
			if reason != "" {
				// A dimension is optional: a non-string value (an
				// object, say) is left out rather than refusing a
				// billable record.
				continue
			}
			if val != "" {
				ev.Dimensions = append(ev.Dimensions, Dimension{Key: d.opts.LiteLLMDimensions[i].Key, Value: val})
			}
		}
	}
	return nil
}

// usageFrom converts one LiteLLM Usage object into exclusive buckets.
func (d *liteLLMDecoder) usageFrom(idx int, v []rawValue, u *usageSlots, q *[NumUnits]int64) error {
	var iu inclusiveUsage
	for f := 0; f < iuNumFields; f++ {
		n, reason := v[u.fields[f]].count(true)
		if reason != "" {
			return llErr(idx, u.names[f], reason)
		}
		if v[u.fields[f]].present() {
			iu.put(f, n)
		}
	}
	// Provider-kwarg copies at the top of the Usage object, used when the
	// details are absent.
	for _, alt := range [...]struct{ f, slot int }{
		{iuCachedRead, u.cacheReadTop}, {iuCacheWrite, u.cacheWriteTop},
		{iuCacheWrite5m, u.topWrite5m}, {iuCacheWrite1h, u.topWrite1h},
	} {
		if iu.has(alt.f) {
			continue
		}
		n, reason := v[alt.slot].count(true)
		if reason != "" {
			return llErr(idx, d.paths.names[alt.slot], reason)
		}
		if v[alt.slot].present() {
			iu.put(alt.f, n)
		}
	}
	if !iu.has(iuPrompt) && !iu.has(iuCompletion) {
		return llErr(idx, u.names[iuPrompt], "missing prompt_tokens and completion_tokens")
	}
	if f, reason := iu.quantities(q, &u.names); reason != "" {
		return llErr(idx, f, reason)
	}
	return nil
}
