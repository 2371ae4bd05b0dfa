package schemas

import (
	"strings"

	"github.com/shopspring/decimal"
)

// OpenRouter decoder. A record is one of:
//
//   - a chat completion response (or the final streaming chunk, or a
//     Responses-API response) with its "usage" object;
//   - a wrapper {"customer_id": "...", "response": <any of these>,
//     "dimensions": {...}, "time": ...}: the way to attach a customer to a
//     response that does not carry one (OpenRouter echoes no "user" field);
//     the wrapper's customer_id, dimensions and time win;
//   - a generation-stats record: GET /api/v1/generation's {"data": {...}}, or
//     the bare data object;
//   - a Broadcast webhook trace (OTLP-JSON {"resourceSpans": [...]}, one
//     event per generation span), see openrouter_otlp.go.
//
// Records come as one object, a JSON array or NDJSON, like every format.
//
// Token convention (inclusive, OpenAI-style):
//   - completion usage: prompt_tokens includes prompt_tokens_details.cached_tokens
//     (cache reads), .cache_write_tokens (cache writes, billed at the 5-minute
//     rate: OpenRouter does not say which TTL) and .audio_tokens;
//     completion_tokens includes completion_tokens_details.reasoning_tokens,
//     .audio_tokens and .image_tokens. Responses-API names (input_tokens,
//     input_tokens_details...) mean the same. web_search_requests from
//     server_tool_use_details (or server_tool_use) is web_search.
//   - generation record: native_tokens_prompt (else tokens_prompt) includes
//     native_tokens_cached; native_tokens_completion (else tokens_completion)
//     includes native_tokens_reasoning and native_tokens_completion_images.
//     The record has no cache-write count, so cache writes are billed as
//     uncached input from this shape; prefer the completion usage where
//     cache writes matter.
//
// Provider is "openrouter" (model ids are OpenRouter slugs and OpenRouter is
// who charged); ReportedCost is usage.cost / total_cost in USD credits.
// Idempotency key: "openrouter:" + the generation id (gen-...), the same in a
// completion response and in its generation record, so the two shapes of one
// generation deduplicate. Each record is one request (requests = 1).
const openRouterName = "openrouter"

// OpenRouterProvider is the Provider of every OpenRouter event.
const OpenRouterProvider = "openrouter"

type openRouterDecoder struct {
	opts  DecodeOptions
	paths pathSet
	// completion / Responses
	id, created, createdAt, model, tier, cost, usage int
	fields                                           [iuNumFields][2]int // chat name, Responses name
	names                                            [iuNumFields]string
	webSearchAlt                                     int
	customers                                        []int
	// generation, under "data." (g) or at the top (bare)
	gen, bare genSlots
	// wrapper
	wrapper                            pathSet
	wCustomer, wResponse, wDims, wTime int
	// OTLP attribute names wanted as customer ids
	otlpCustomers []string
}

type genSlots struct {
	obj, id, total, createdAt, model, tier                                    int
	prompt, completion, nPrompt, nCompletion, nReasoning, nCached, nImagesOut int
	customers                                                                 []int
	prefix                                                                    string
}

func newOpenRouterDecoder(opts DecodeOptions) *openRouterDecoder {
	d := &openRouterDecoder{opts: opts}
	p := &d.paths
	d.id = p.add("id")
	d.created = p.add("created")
	d.createdAt = p.add("created_at")
	d.model = p.add("model")
	d.tier = p.add("service_tier")
	d.usage = p.add("usage")
	d.cost = p.add("usage.cost")
	for f, pair := range [iuNumFields][2]string{
		iuPrompt:     {"prompt_tokens", "input_tokens"},
		iuCompletion: {"completion_tokens", "output_tokens"},
		iuCachedRead: {"prompt_tokens_details.cached_tokens", "input_tokens_details.cached_tokens"},
		iuCacheWrite: {"prompt_tokens_details.cache_write_tokens", "input_tokens_details.cache_write_tokens"},
		iuAudioIn:    {"prompt_tokens_details.audio_tokens", "input_tokens_details.audio_tokens"},
		iuImageIn:    {"prompt_tokens_details.image_tokens", "input_tokens_details.image_tokens"},
		iuReasoning:  {"completion_tokens_details.reasoning_tokens", "output_tokens_details.reasoning_tokens"},
		iuAudioOut:   {"completion_tokens_details.audio_tokens", "output_tokens_details.audio_tokens"},
		iuImageOut:   {"completion_tokens_details.image_tokens", "output_tokens_details.image_tokens"},
		iuWebSearch:  {"server_tool_use_details.web_search_requests", "server_tool_use_details.web_search_requests"},
	} {
		if pair[0] == "" {
			d.fields[f] = [2]int{-1, -1}
			continue
		}
		d.fields[f] = [2]int{p.add("usage." + pair[0]), p.add("usage." + pair[1])}
		d.names[f] = "usage." + pair[0]
	}
	d.webSearchAlt = p.add("usage.server_tool_use.web_search_requests")
	for _, c := range opts.OpenRouterCustomerFields {
		d.customers = append(d.customers, p.add(c))
	}
	d.gen = addGenPaths(p, "data", opts)
	d.bare = addGenPaths(p, "", opts)

	d.wCustomer = d.wrapper.add("customer_id")
	d.wResponse = d.wrapper.add("response")
	d.wDims = d.wrapper.add("dimensions")
	d.wTime = d.wrapper.add("time")
	d.otlpCustomers = opts.OpenRouterCustomerFields
	return d
}

func addGenPaths(p *pathSet, prefix string, opts DecodeOptions) genSlots {
	add := func(name string) int { return p.add(joinPath(prefix, name)) }
	g := genSlots{prefix: prefix, obj: -1}
	if prefix != "" {
		g.obj = p.add(prefix)
	}
	g.id = add("id")
	g.total = add("total_cost")
	g.createdAt = add("created_at")
	g.model = add("model")
	g.tier = add("service_tier")
	g.prompt = add("tokens_prompt")
	g.completion = add("tokens_completion")
	g.nPrompt = add("native_tokens_prompt")
	g.nCompletion = add("native_tokens_completion")
	g.nReasoning = add("native_tokens_reasoning")
	g.nCached = add("native_tokens_cached")
	g.nImagesOut = add("native_tokens_completion_images")
	for _, c := range opts.OpenRouterCustomerFields {
		g.customers = append(g.customers, add(c))
	}
	return g
}

func (d *openRouterDecoder) Name() string { return openRouterName }

func orErr(idx int, field, reason string) error {
	return &DecodeError{Decoder: openRouterName, Index: idx, Field: field, Reason: reason}
}

func (d *openRouterDecoder) Decode(dst []UsageEvent, msg []byte) ([]UsageEvent, error) {
	n0 := len(dst)
	s := scanner{data: msg}
	var vals []rawValue
	spanIdx := 0 // OTLP spans count as records
	idx, err := s.records(func(idx int) error {
		idx += spanIdx
		m, err := sniffRecord(&s)
		if err != nil {
			return errAt(openRouterName, idx, "", err)
		}
		if m&mkEmpty != 0 {
			// OpenRouter's Broadcast connection test sends an empty
			// payload: nothing to bill.
			_, err := s.objectStart()
			return err
		}
		if m&mkResourceSpans != 0 {
			var n int
			dst, n, err = d.decodeOTLP(&s, idx, dst)
			if n > 0 {
				spanIdx += n - 1
			}
			return err
		}
		if vals == nil {
			vals = make([]rawValue, max(d.paths.size(), d.wrapper.size()))
		}
		var ev UsageEvent
		if m&mkCustomerID != 0 && m&mkResponse != 0 {
			err = d.wrapped(&s, idx, vals, &ev)
		} else {
			err = d.record(&s, idx, vals, &ev)
		}
		if err != nil {
			return err
		}
		dst = append(dst, ev)
		return nil
	})
	if err != nil {
		return dst[:n0], errAt(openRouterName, idx+spanIdx, "", err)
	}
	return dst, nil
}

// wrapped decodes {"customer_id", "response", "dimensions", "time"}.
func (d *openRouterDecoder) wrapped(s *scanner, idx int, vals []rawValue, ev *UsageEvent) error {
	vals = vals[:d.wrapper.size()]
	clear(vals)
	if f, err := d.wrapper.extract(s, vals); err != nil {
		return errAt(openRouterName, idx, f, err)
	}
	cust, reason := vals[d.wCustomer].text(true)
	if reason != "" {
		return orErr(idx, "customer_id", reason)
	}
	if cust == "" {
		return orErr(idx, "customer_id", "missing customer id")
	}
	resp := vals[d.wResponse]
	if resp.kind != kindObject {
		return orErr(idx, "response", "expected an OpenRouter response object, got "+kindName(resp.kind))
	}
	inner := scanner{data: resp.raw}
	m, err := sniffRecord(&inner)
	if err != nil {
		return errAt(openRouterName, idx, "response", err)
	}
	if m&(mkResourceSpans|mkCustomerID) != 0 {
		return orErr(idx, "response", "expected a completion response or generation record")
	}
	innerVals := make([]rawValue, d.paths.size())
	if err := d.recordWith(&inner, idx, innerVals, ev, cust); err != nil {
		if de, ok := err.(*DecodeError); ok && de.Field != "" {
			de.Field = "response." + de.Field
		}
		return err
	}
	if tv := vals[d.wTime]; tv.present() {
		t, reason := tv.epochOrTimestamp(3, "milliseconds", nil)
		if reason != "" {
			return orErr(idx, "time", reason)
		}
		ev.Time = t
	}
	if dv := vals[d.wDims]; dv.present() {
		dims, field, reason := stringMap(dv)
		if reason != "" {
			return orErr(idx, "dimensions"+dotted(field), reason)
		}
		ev.Dimensions = dims
	}
	return nil
}

func (d *openRouterDecoder) record(s *scanner, idx int, vals []rawValue, ev *UsageEvent) error {
	vals = vals[:d.paths.size()]
	return d.recordWith(s, idx, vals, ev, "")
}

// recordWith decodes a completion response or generation record; customer,
// when not empty, is the wrapper's.
func (d *openRouterDecoder) recordWith(s *scanner, idx int, v []rawValue, ev *UsageEvent, customer string) error {
	clear(v)
	if f, err := d.paths.extract(s, v); err != nil {
		return errAt(openRouterName, idx, f, err)
	}
	ev.Source = SourceOpenRouter
	ev.Provider = OpenRouterProvider
	var err error
	switch {
	case v[d.gen.obj].present():
		if v[d.gen.obj].kind != kindObject {
			return orErr(idx, "data", "expected the generation object, got "+kindName(v[d.gen.obj].kind))
		}
		err = d.generation(idx, v, &d.gen, ev)
	case v[d.bare.prompt].present() || v[d.bare.nPrompt].present():
		err = d.generation(idx, v, &d.bare, ev)
	default:
		err = d.completion(idx, v, ev)
	}
	if err != nil {
		return err
	}
	if customer != "" {
		ev.CustomerID = customer
	}
	if ev.CustomerID == "" {
		return orErr(idx, d.opts.OpenRouterCustomerFields[0], "missing customer id: none of "+
			strings.Join(d.opts.OpenRouterCustomerFields, ", ")+" is set; wrap the response as {\"customer_id\": ..., \"response\": ...}")
	}
	ev.Quantities[UnitRequests] = 1
	return nil
}

func (d *openRouterDecoder) customer(idx int, v []rawValue, slots []int, prefix string, ev *UsageEvent) error {
	for i, slot := range slots {
		c, reason := v[slot].text(true)
		if v[slot].kind == kindObject {
			continue // "user" as an object is not an id; "user.id" may match
		}
		if reason != "" {
			return orErr(idx, joinPath(prefix, d.opts.OpenRouterCustomerFields[i]), reason)
		}
		if c != "" {
			ev.CustomerID = c
			return nil
		}
	}
	return nil
}

func (d *openRouterDecoder) completion(idx int, v []rawValue, ev *UsageEvent) error {
	var reason string
	if ev.ID, reason = v[d.id].text(false); reason != "" {
		return orErr(idx, "id", reason)
	}
	if ev.ID == "" {
		return orErr(idx, "id", "missing generation id")
	}
	ev.ID = "openrouter:" + ev.ID
	if ev.Model, reason = v[d.model].text(false); reason != "" || ev.Model == "" {
		if reason == "" {
			reason = "missing model"
		}
		return orErr(idx, "model", reason)
	}
	tv, tname := v[d.created], "created"
	if !tv.present() {
		tv, tname = v[d.createdAt], "created_at"
	}
	if !tv.present() {
		return orErr(idx, "created", "missing event time")
	}
	if ev.Time, reason = tv.epochOrTimestamp(0, "seconds", nil); reason != "" {
		return orErr(idx, tname, reason)
	}
	if !v[d.usage].present() {
		return orErr(idx, "usage", "missing usage")
	}
	var iu inclusiveUsage
	for f := range iuNumFields {
		for alt, slot := range d.fields[f] {
			if slot < 0 || !v[slot].present() {
				continue
			}
			n, reason := v[slot].count(false)
			if reason != "" {
				return orErr(idx, d.paths.names[slot], reason)
			}
			if iu.has(f) && alt == 1 && d.fields[f][0] != d.fields[f][1] {
				return orErr(idx, d.paths.names[slot], "both Chat and Responses names given")
			}
			iu.put(f, n)
		}
	}
	if !iu.has(iuWebSearch) && v[d.webSearchAlt].present() {
		n, reason := v[d.webSearchAlt].count(false)
		if reason != "" {
			return orErr(idx, d.paths.names[d.webSearchAlt], reason)
		}
		iu.put(iuWebSearch, n)
	}
	if !iu.has(iuPrompt) || !iu.has(iuCompletion) {
		return orErr(idx, "usage.prompt_tokens", "missing prompt_tokens/completion_tokens (or input_tokens/output_tokens)")
	}
	if f, reason := iu.quantities(&ev.Quantities, &d.names); reason != "" {
		return orErr(idx, f, reason)
	}
	if err := d.costAndTier(idx, v, d.cost, d.tier, ev); err != nil {
		return err
	}
	return d.customer(idx, v, d.customers, "", ev)
}

func (d *openRouterDecoder) costAndTier(idx int, v []rawValue, costSlot, tierSlot int, ev *UsageEvent) error {
	raw, reason := v[costSlot].costText()
	if reason != "" {
		return orErr(idx, d.paths.names[costSlot], reason)
	}
	if raw != nil {
		c, reason := parseCost(raw)
		if reason != "" {
			return orErr(idx, d.paths.names[costSlot], reason)
		}
		ev.ReportedCost = decimal.NullDecimal{Decimal: c, Valid: true}
	}
	t, reason := v[tierSlot].text(false)
	if reason != "" {
		return orErr(idx, d.paths.names[tierSlot], reason)
	}
	tier, err := ParseTier(t)
	if err != nil {
		return orErr(idx, d.paths.names[tierSlot], err.Error())
	}
	ev.Tier = tier
	return nil
}

func (d *openRouterDecoder) generation(idx int, v []rawValue, g *genSlots, ev *UsageEvent) error {
	name := func(slot int) string { return d.paths.names[slot] }
	var reason string
	if ev.ID, reason = v[g.id].text(false); reason != "" {
		return orErr(idx, name(g.id), reason)
	}
	if ev.ID == "" {
		return orErr(idx, name(g.id), "missing generation id")
	}
	ev.ID = "openrouter:" + ev.ID
	if ev.Model, reason = v[g.model].text(false); reason != "" || ev.Model == "" {
		if reason == "" {
			reason = "missing model"
		}
		return orErr(idx, name(g.model), reason)
	}
	if ev.Time, reason = v[g.createdAt].epochOrTimestamp(0, "seconds", nil); reason != "" {
		return orErr(idx, name(g.createdAt), reason)
	}
	get := func(native, normalized int) (int64, error) {
		slot := native
		if !v[slot].present() {
			slot = normalized
		}
		if slot < 0 {
			return 0, nil
		}
		n, reason := v[slot].count(false)
		if reason != "" {
			return 0, orErr(idx, name(slot), reason)
		}
		return n, nil
	}
	var iu inclusiveUsage
	var names [iuNumFields]string
	for _, f := range [...]struct {
		f                  int
		native, normalized int
	}{
		{iuPrompt, g.nPrompt, g.prompt}, {iuCompletion, g.nCompletion, g.completion},
		{iuCachedRead, g.nCached, -1}, {iuReasoning, g.nReasoning, -1}, {iuImageOut, g.nImagesOut, -1},
	} {
		n, err := get(f.native, f.normalized)
		if err != nil {
			return err
		}
		iu.put(f.f, n)
		names[f.f] = name(f.native)
	}
	if !v[g.nPrompt].present() && !v[g.prompt].present() {
		return orErr(idx, name(g.nPrompt), "missing native_tokens_prompt and tokens_prompt")
	}
	if f, reason := iu.quantities(&ev.Quantities, &names); reason != "" {
		return orErr(idx, f, reason)
	}
	if err := d.costAndTier(idx, v, g.total, g.tier, ev); err != nil {
		return err
	}
	return d.customer(idx, v, g.customers, g.prefix, ev)
}

// stringMap reads a JSON object of string values (dimensions), in order.
func stringMap(v rawValue) ([]Dimension, string, string) {
	s := scanner{data: v.raw}
	more, err := s.objectStart()
	if err != nil {
		return nil, "", err.Error()
	}
	var dims []Dimension
	for more {
		key, err := s.objectKey()
		if err != nil {
			return nil, "", err.Error()
		}
		k := string(key)
		val, err := s.readValue()
		if err != nil {
			return nil, k, err.Error()
		}
		if val.kind != kindString {
			return nil, k, "expected a string value, got " + kindName(val.kind)
		}
		if k == "" {
			return nil, `""`, "empty dimension key"
		}
		for _, d := range dims {
			if d.Key == k {
				return nil, k, "duplicate key"
			}
		}
		if len(dims) >= maxDimensions {
			return nil, "", "more than 64 dimensions"
		}
		t, _ := val.text(false)
		dims = append(dims, Dimension{Key: k, Value: t})
		if more, err = s.objectNext(); err != nil {
			return nil, "", err.Error()
		}
	}
	return dims, "", ""
}
