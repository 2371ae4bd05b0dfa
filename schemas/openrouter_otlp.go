package schemas

import (
	"strings"

	"github.com/shopspring/decimal"
)

// OpenRouter Broadcast webhook: OTLP-JSON traces,
// resourceSpans[].scopeSpans[].spans[], one event per generation span.
//
// A span is a generation when it carries a model or a token attribute; other
// spans are skipped. Attributes read (the docs disagree on names, so both
// spellings are accepted):
//
//	model        gen_ai.response.model, else gen_ai.request.model
//	input        gen_ai.usage.input_tokens | gen_ai.usage.prompt_tokens (inclusive)
//	output       gen_ai.usage.output_tokens | gen_ai.usage.completion_tokens (inclusive)
//	cache reads  gen_ai.usage.cache_read.input_tokens | gen_ai.usage.cache_read_input_tokens
//	cache writes gen_ai.usage.cache_creation.input_tokens | gen_ai.usage.cache_creation_input_tokens (5m)
//	reasoning    gen_ai.usage.reasoning.output_tokens | gen_ai.usage.reasoning_tokens
//	cost         gen_ai.usage.cost (unverified: OpenRouter's docs name no cost key)
//	id           gen_ai.response.id
//	customer     the attributes named in OpenRouterCustomerFields (default user.id)
//	dimensions   trace.metadata.<key> -> <key>
//
// Following the OpenTelemetry GenAI conventions, input_tokens includes cache
// reads and writes and output_tokens includes reasoning. A trace with only
// input/output counts (as in OpenRouter's own example) bills all input as
// uncached input.
//
// Idempotency key: "openrouter:" + gen_ai.response.id when present (so a
// span deduplicates against the same generation's completion response),
// else "openrouter:span:<traceId>:<spanId>". Time: startTimeUnixNano. The
// DecodeError index of a span is its ordinal within the message.

const (
	oaModel = iota
	oaRequestModel
	oaInput
	oaOutput
	oaCacheRead
	oaCacheWrite
	oaReasoning
	oaCost
	oaResponseID
	oaNum
)

var otlpAttrNames = [oaNum][]string{
	oaModel:        {"gen_ai.response.model"},
	oaRequestModel: {"gen_ai.request.model"},
	oaInput:        {"gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"},
	oaOutput:       {"gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"},
	oaCacheRead:    {"gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"},
	oaCacheWrite:   {"gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens"},
	oaReasoning:    {"gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens"},
	oaCost:         {"gen_ai.usage.cost"},
	oaResponseID:   {"gen_ai.response.id"},
}

func otlpAttrIndex(key []byte) int {
	for i, names := range otlpAttrNames {
		for _, n := range names {
			if n == string(key) {
				return i
			}
		}
	}
	return -1
}

type otlpSpan struct {
	traceID, spanID string
	start           rawValue
	attrs           [oaNum]rawValue
	attrKeys        [oaNum]string
	customers       []rawValue
	dims            []Dimension
}

// decodeOTLP decodes one OTLP-JSON object, appending an event per generation
// span. It returns the number of spans seen.
func (d *openRouterDecoder) decodeOTLP(s *scanner, base int, dst []UsageEvent) ([]UsageEvent, int, error) {
	n := 0
	fail := func(field string, err error) ([]UsageEvent, int, error) {
		return dst, n, errAt(openRouterName, base+n, field, err)
	}
	more, err := s.objectStart()
	if err != nil {
		return fail("", err)
	}
	for more {
		key, err := s.objectKey()
		if err != nil {
			return fail("", err)
		}
		if string(key) != "resourceSpans" {
			if err := s.skipValue(); err != nil {
				return fail("", err)
			}
		} else {
			if ok, err := s.null(); err != nil {
				return fail("resourceSpans", err)
			} else if !ok {
				err := eachElement(s, func() error {
					return eachMember(s, func(k []byte) error {
						if string(k) != "scopeSpans" && string(k) != "instrumentationLibrarySpans" {
							return s.skipValue()
						}
						return eachElement(s, func() error {
							return eachMember(s, func(k []byte) error {
								if string(k) != "spans" {
									return s.skipValue()
								}
								return eachElement(s, func() error {
									var sp otlpSpan
									sp.customers = make([]rawValue, len(d.otlpCustomers))
									if err := d.scanSpan(s, &sp); err != nil {
										return err
									}
									var ev UsageEvent
									ok, err := d.spanEvent(base+n, &sp, &ev)
									if err != nil {
										return err
									}
									if ok {
										dst = append(dst, ev)
									}
									n++
									return nil
								})
							})
						})
					})
				})
				if err != nil {
					return fail("resourceSpans", err)
				}
			}
		}
		if more, err = s.objectNext(); err != nil {
			return fail("", err)
		}
	}
	return dst, n, nil
}

// eachElement calls fn for each element of an array (or nothing for null).
func eachElement(s *scanner, fn func() error) error {
	if ok, err := s.null(); ok || err != nil {
		return err
	}
	more, err := s.arrayStart()
	for err == nil && more {
		if err = fn(); err != nil {
			return err
		}
		more, err = s.arrayNext()
	}
	return err
}

// eachMember calls fn for each member of an object (or nothing for null);
// fn must consume the value.
func eachMember(s *scanner, fn func(key []byte) error) error {
	if ok, err := s.null(); ok || err != nil {
		return err
	}
	more, err := s.objectStart()
	for err == nil && more {
		var key []byte
		if key, err = s.objectKey(); err != nil {
			return err
		}
		if err = fn(key); err != nil {
			return err
		}
		more, err = s.objectNext()
	}
	return err
}

func (d *openRouterDecoder) scanSpan(s *scanner, sp *otlpSpan) error {
	return eachMember(s, func(k []byte) error {
		switch string(k) {
		case "traceId", "spanId":
			v, err := s.readValue()
			if err != nil {
				return err
			}
			t, reason := v.text(false)
			if reason != "" {
				return &fieldErr{field: string(k), err: s.errf(reason)}
			}
			if string(k) == "traceId" {
				sp.traceID = t
			} else {
				sp.spanID = t
			}
			return nil
		case "startTimeUnixNano":
			v, err := s.readValue()
			sp.start = v
			return err
		case "attributes":
			return eachElement(s, func() error { return d.scanAttr(s, sp) })
		}
		return s.skipValue()
	})
}

// scanAttr reads one {"key": ..., "value": {"<type>Value": ...}}.
func (d *openRouterDecoder) scanAttr(s *scanner, sp *otlpSpan) error {
	var key strSpan
	var val rawValue
	err := eachMember(s, func(k []byte) error {
		switch string(k) {
		case "key":
			v, err := s.readValue()
			if err != nil {
				return err
			}
			if v.kind != kindString {
				return s.errf("attribute key: expected a string, got " + kindName(v.kind))
			}
			key = strSpan{v.raw, v.esc}
			return nil
		case "value":
			return eachMember(s, func(k []byte) error {
				switch string(k) {
				case "stringValue", "intValue", "doubleValue", "boolValue":
					v, err := s.readValue()
					if err == nil && v.kind != kindNull {
						val = v
					}
					return err
				}
				return s.skipValue()
			})
		}
		return s.skipValue()
	})
	if err != nil {
		return err
	}
	k := key.raw
	if key.esc {
		k = appendUnescaped(nil, k)
	}
	if i := otlpAttrIndex(k); i >= 0 {
		if sp.attrs[i].isSet() {
			return &fieldErr{field: "attributes." + string(k), err: s.errf("duplicate attribute")}
		}
		if !val.isSet() {
			val = rawValue{kind: kindNull}
		}
		sp.attrs[i] = val
		sp.attrKeys[i] = string(k)
		return nil
	}
	for i, c := range d.otlpCustomers {
		if c == string(k) && !sp.customers[i].isSet() {
			sp.customers[i] = val
		}
	}
	if rest, ok := strings.CutPrefix(string(k), "trace.metadata."); ok && rest != "" && val.kind == kindString {
		t, _ := val.text(false)
		for _, dm := range sp.dims {
			if dm.Key == rest {
				return &fieldErr{field: "attributes." + string(k), err: s.errf("duplicate attribute")}
			}
		}
		if len(sp.dims) < maxDimensions {
			sp.dims = append(sp.dims, Dimension{Key: rest, Value: t})
		}
	}
	return nil
}

func (d *openRouterDecoder) spanEvent(idx int, sp *otlpSpan, ev *UsageEvent) (bool, error) {
	a := &sp.attrs
	isGen := false
	for _, i := range [...]int{oaModel, oaRequestModel, oaInput, oaOutput, oaCacheRead, oaCacheWrite, oaReasoning} {
		if a[i].present() {
			isGen = true
		}
	}
	if !isGen {
		return false, nil
	}
	attrField := func(i int) string { return "attributes." + sp.attrKeys[i] }
	ev.Source = SourceOpenRouter
	ev.Provider = OpenRouterProvider
	var reason string
	for _, i := range [...]int{oaModel, oaRequestModel} {
		if ev.Model, reason = a[i].text(false); reason != "" {
			return false, orErr(idx, attrField(i), reason)
		}
		if ev.Model != "" {
			break
		}
	}
	if ev.Model == "" {
		return false, orErr(idx, "attributes.gen_ai.response.model", "missing model (gen_ai.response.model or gen_ai.request.model)")
	}
	if !sp.start.present() {
		return false, orErr(idx, "startTimeUnixNano", "missing event time")
	}
	if ev.Time, reason = sp.start.epochOrTimestamp(9, "nanoseconds", nil); reason != "" {
		return false, orErr(idx, "startTimeUnixNano", reason)
	}
	var iu inclusiveUsage
	var names [iuNumFields]string
	for _, m := range [...]struct{ attr, f int }{
		{oaInput, iuPrompt}, {oaOutput, iuCompletion}, {oaCacheRead, iuCachedRead},
		{oaCacheWrite, iuCacheWrite}, {oaReasoning, iuReasoning},
	} {
		n, reason := a[m.attr].count(true)
		if reason != "" {
			return false, orErr(idx, attrField(m.attr), reason)
		}
		iu.put(m.f, n)
		names[m.f] = attrField(m.attr)
		if names[m.f] == "attributes." {
			names[m.f] = "attributes." + otlpAttrNames[m.attr][0]
		}
	}
	if f, reason := iu.quantities(&ev.Quantities, &names); reason != "" {
		return false, orErr(idx, f, reason)
	}
	ev.Quantities[UnitRequests] = 1
	raw, reason := a[oaCost].costText()
	if reason != "" {
		return false, orErr(idx, attrField(oaCost), reason)
	}
	if raw != nil {
		c, reason := parseCost(raw)
		if reason != "" {
			return false, orErr(idx, attrField(oaCost), reason)
		}
		ev.ReportedCost = decimal.NullDecimal{Decimal: c, Valid: true}
	}
	for _, c := range sp.customers {
		if t, _ := c.text(true); t != "" {
			ev.CustomerID = t
			break
		}
	}
	if ev.CustomerID == "" {
		return false, orErr(idx, "attributes."+d.otlpCustomers[0], "missing customer id: none of the span attributes "+strings.Join(d.otlpCustomers, ", ")+" is set")
	}
	respID, reason := a[oaResponseID].text(false)
	if reason != "" {
		return false, orErr(idx, attrField(oaResponseID), reason)
	}
	switch {
	case respID != "":
		ev.ID = "openrouter:" + respID
	case sp.traceID != "" && sp.spanID != "":
		ev.ID = "openrouter:span:" + sp.traceID + ":" + sp.spanID
	default:
		return false, orErr(idx, "spanId", "missing traceId/spanId (needed for the idempotency key)")
	}
	ev.Dimensions = sp.dims
	return true, nil
}
