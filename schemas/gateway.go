package schemas

import (
	"strconv"

	"github.com/shopspring/decimal"
)

// The gateway event format, tariff's own (usage_event.v1.schema.json,
// README.md). A message holds one event object, a JSON array of them, or
// NDJSON. Each event:
//
//	{"id": "...", "time": "2026-02-22T00:00:00.123Z" | 1771718400123,
//	 "customer_id": "...", "provider": "anthropic", "model": "...",
//	 "service_tier": "standard", "dimensions": {"team": "search"},
//	 "usage": {"input": 1200, "cached_input": 8000, ...},
//	 "reported_cost": "0.02025"}
//
// with exactly one of "usage" (exclusive buckets named by Unit.String()),
// "openai_usage", "openai_responses_usage" or "anthropic_usage" (the
// provider's raw usage object, normalized here).
//
// The decoder is a hand-rolled scanner, not encoding/json: a typical event
// decodes in a few hundred nanoseconds with 2 allocations (one string that
// backs every string field, one dimensions slice).

const gatewayName = "gateway"

type gatewayDecoder struct{}

func (gatewayDecoder) Name() string { return gatewayName }

func (d gatewayDecoder) Decode(dst []UsageEvent, msg []byte) ([]UsageEvent, error) {
	n0 := len(dst)
	s := scanner{data: msg}
	idx, err := s.records(func(idx int) error {
		dst = append(dst, UsageEvent{})
		return decodeGatewayEvent(&s, idx, &dst[len(dst)-1])
	})
	if err != nil {
		return dst[:n0], errAt(gatewayName, idx, "", err)
	}
	return dst, nil
}

// strSpan is a string value's raw contents inside the message.
type strSpan struct {
	raw []byte
	esc bool
}

// maxDimensions bounds the dimensions of one event.
const maxDimensions = 64

// inlineDims is how many dimensions decode without an extra allocation for
// their spans.
const inlineDims = 8

// Gateway keys, as bits of a seen mask (duplicates are refused).
const (
	gkID = 1 << iota
	gkTime
	gkCustomer
	gkProvider
	gkModel
	gkTier
	gkDims
	gkUsage
	gkOpenAI
	gkResponses
	gkAnthropic
	gkCost
	gkVersion
)

const gkAnyUsage = gkUsage | gkOpenAI | gkResponses | gkAnthropic

// gatewayState is what one event's scan collects before the strings are
// materialized. It lives on the stack.
type gatewayState struct {
	seen                      uint32
	id, customer, prov, model strSpan
	tier                      strSpan
	hasTier                   bool
	nd                        int
	dims                      [inlineDims][2]strSpan
	moreDims                  [][2]strSpan
	q                         [NumUnits]int64
	qSet                      uint32
	iu                        inclusiveUsage
	au                        anthropicUsage
	cost                      []byte
	ev                        *UsageEvent
	usageField                string
}

func gwErr(idx int, field string, err error) error {
	if se, ok := err.(*scanError); ok {
		return &DecodeError{Decoder: gatewayName, Index: idx, Field: field, Reason: se.Error()}
	}
	if de, ok := err.(*DecodeError); ok {
		return de
	}
	return &DecodeError{Decoder: gatewayName, Index: idx, Field: field, Reason: err.Error()}
}

func gwReason(idx int, field, reason string) error {
	return &DecodeError{Decoder: gatewayName, Index: idx, Field: field, Reason: reason}
}

// decodeGatewayEvent reads one event object into ev.
func decodeGatewayEvent(s *scanner, idx int, ev *UsageEvent) error {
	var st gatewayState
	st.ev = ev
	more, err := s.objectStart()
	if err != nil {
		return gwErr(idx, "", err)
	}
	for more {
		key, err := s.objectKey()
		if err != nil {
			return gwErr(idx, "", err)
		}
		var bit uint32
		var field string
		switch string(key) {
		case "id":
			bit, field = gkID, "id"
			err = s.stringField(&st.id, false)
		case "customer_id":
			bit, field = gkCustomer, "customer_id"
			err = s.stringField(&st.customer, false)
		case "model":
			bit, field = gkModel, "model"
			err = s.stringField(&st.model, false)
		case "provider":
			bit, field = gkProvider, "provider"
			err = s.stringField(&st.prov, true)
		case "service_tier":
			bit, field = gkTier, "service_tier"
			var isNull bool
			if isNull, err = s.null(); err == nil && !isNull {
				st.hasTier = true
				err = s.stringField(&st.tier, false)
			}
		case "time":
			bit, field = gkTime, "time"
			err = s.gatewayTime(ev)
		case "dimensions":
			bit, field = gkDims, "dimensions"
			if err = st.scanDims(s); err != nil {
				if fe, ok := err.(*fieldErr); ok {
					field, err = "dimensions."+fe.field, fe.err
				}
			}
		case "usage":
			bit, field = gkUsage, "usage"
			var sub string
			if sub, err = st.scanUsage(s); err != nil {
				field += dotted(sub)
			}
		case "openai_usage", "openai_responses_usage":
			bit, field = gkOpenAI, "openai_usage"
			if string(key) == "openai_responses_usage" {
				bit, field = gkResponses, "openai_responses_usage"
			}
			var sub string
			if sub, err = scanOpenAIUsage(s, &st.iu); err != nil {
				field += dotted(sub)
			}
		case "anthropic_usage":
			bit, field = gkAnthropic, "anthropic_usage"
			var sub string
			if sub, err = scanAnthropicUsage(s, &st.au); err != nil {
				field += dotted(sub)
			}
		case "reported_cost":
			bit, field = gkCost, "reported_cost"
			st.cost, err = s.costValue()
		case "version":
			bit, field = gkVersion, "version"
			var v int64
			var ok bool
			if v, ok, err = s.count(); err == nil && (!ok || v != 1) {
				return gwReason(idx, field, "unsupported version "+strconv.FormatInt(v, 10)+"; expected 1")
			}
		default:
			// Unknown keys are skipped (forward compatibility), but
			// still validated.
			err = s.skipValue()
		}
		if st.seen&bit != 0 {
			return gwReason(idx, field, "duplicate key")
		}
		st.seen |= bit
		if err != nil {
			return gwErr(idx, field, err)
		}
		if more, err = s.objectNext(); err != nil {
			return gwErr(idx, "", err)
		}
	}
	return st.finish(idx)
}

// stringField reads a string (or, if nullable, null) into sp.
func (s *scanner) stringField(sp *strSpan, nullable bool) error {
	switch s.peek() {
	case '"':
		raw, esc, err := s.stringRaw()
		sp.raw, sp.esc = raw, esc
		return err
	case 'n':
		if nullable {
			return s.literal("null")
		}
	}
	start := s.pos
	rv, err := s.readValue()
	if err != nil {
		return err
	}
	return &scanError{pos: start, reason: "expected a string, got " + kindName(rv.kind)}
}

// gatewayTime reads "time": an RFC 3339 string or integer epoch milliseconds.
func (s *scanner) gatewayTime(ev *UsageEvent) error {
	start := s.pos
	switch c := s.peek(); {
	case c == '"':
		raw, esc, err := s.stringRaw()
		if err != nil {
			return err
		}
		if esc {
			var buf [64]byte
			raw = appendUnescaped(buf[:0], raw)
		}
		t, reason := parseTimestamp(raw, nil)
		if reason != "" {
			return &scanError{pos: start, reason: reason}
		}
		ev.Time = t
		return nil
	case c == '-' || (c >= '0' && c <= '9'):
		raw, err := s.numberRaw()
		if err != nil {
			return err
		}
		t, reason := parseEpoch(raw, 3, "milliseconds")
		if reason != "" {
			return &scanError{pos: start, reason: reason}
		}
		ev.Time = t
		return nil
	}
	rv, err := s.readValue()
	if err != nil {
		return err
	}
	return &scanError{pos: start, reason: "expected an RFC 3339 string or epoch milliseconds, got " + kindName(rv.kind)}
}

// costValue reads a decimal amount given as a JSON number or a string, or null.
func (s *scanner) costValue() ([]byte, error) {
	start := s.pos
	switch c := s.peek(); {
	case c == 'n':
		return nil, s.literal("null")
	case c == '"':
		raw, _, err := s.stringRaw()
		if err != nil {
			return nil, err
		}
		if !validNumber(raw) {
			return nil, &scanError{pos: start, reason: "expected a decimal amount, got " + quoteText(raw)}
		}
		return raw, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return s.numberRaw()
	}
	rv, err := s.readValue()
	if err != nil {
		return nil, err
	}
	return nil, &scanError{pos: start, reason: "expected a decimal amount, got " + kindName(rv.kind)}
}

// scanDims reads "dimensions": an object of string values, or null.
func (st *gatewayState) scanDims(s *scanner) error {
	if ok, err := s.null(); ok || err != nil {
		return err
	}
	more, err := s.objectStart()
	if err != nil {
		return err
	}
	for more {
		if s.peek() != '"' {
			return s.unexpected("a string key")
		}
		kraw, kesc, err := s.stringRaw()
		if err != nil {
			return err
		}
		if len(kraw) == 0 {
			return &fieldErr{field: `""`, err: s.errf("empty dimension key")}
		}
		if s.peek() != ':' {
			return s.unexpected("':'")
		}
		s.pos++
		if s.peek() != '"' {
			start := s.pos
			rv, err := s.readValue()
			if err != nil {
				return err
			}
			return &fieldErr{field: string(kraw), err: &scanError{pos: start, reason: "expected a string value, got " + kindName(rv.kind)}}
		}
		vraw, vesc, err := s.stringRaw()
		if err != nil {
			return &fieldErr{field: string(kraw), err: err}
		}
		if st.nd >= maxDimensions {
			return s.errf("more than " + strconv.Itoa(maxDimensions) + " dimensions")
		}
		d := [2]strSpan{{kraw, kesc}, {vraw, vesc}}
		if st.nd < inlineDims {
			st.dims[st.nd] = d
		} else {
			st.moreDims = append(st.moreDims, d)
		}
		st.nd++
		if more, err = s.objectNext(); err != nil {
			return err
		}
	}
	return nil
}

func (st *gatewayState) dim(i int) *[2]strSpan {
	if i < inlineDims {
		return &st.dims[i]
	}
	return &st.moreDims[i-inlineDims]
}

// scanUsage reads "usage": exclusive counts keyed by Unit name. An unknown
// unit is an error, not skipped: skipping it would leave tokens unbilled.
func (st *gatewayState) scanUsage(s *scanner) (string, error) {
	more, err := s.objectStart()
	if err != nil {
		return "", err
	}
	for more {
		key, err := s.objectKey()
		if err != nil {
			return "", err
		}
		u, ok := unitByName(key)
		if !ok {
			return string(key), s.errf("unknown unit; expected one of " + unitList())
		}
		if st.qSet&(1<<u) != 0 {
			return string(key), s.errf("duplicate key")
		}
		st.qSet |= 1 << u
		v, present, err := s.count()
		if err != nil {
			return string(key), err
		}
		if present {
			st.q[u] = v
		}
		if more, err = s.objectNext(); err != nil {
			return "", err
		}
	}
	return "", nil
}

// unitByName is ParseUnit for a byte slice, without allocating.
func unitByName(b []byte) (Unit, bool) {
	for i := range unitNames {
		if unitNames[i] == string(b) {
			return Unit(i), true
		}
	}
	return 0, false
}

func unitList() string {
	s := ""
	for i, n := range unitNames {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

// finish checks required fields, converts provider usage, and builds the
// event's strings: every string field is a substring of one allocation.
func (st *gatewayState) finish(idx int) error {
	ev := st.ev
	switch {
	case st.seen&gkID == 0 || len(st.id.raw) == 0:
		return gwReason(idx, "id", "missing idempotency key")
	case st.seen&gkCustomer == 0 || len(st.customer.raw) == 0:
		return gwReason(idx, "customer_id", "missing customer id")
	case st.seen&gkModel == 0 || len(st.model.raw) == 0:
		return gwReason(idx, "model", "missing model")
	case st.seen&gkTime == 0:
		return gwReason(idx, "time", "missing event time")
	}
	switch st.seen & gkAnyUsage {
	case 0:
		return gwReason(idx, "usage", "missing; expected one of usage, openai_usage, openai_responses_usage, anthropic_usage")
	case gkUsage:
		ev.Quantities = st.q
	case gkOpenAI, gkResponses:
		field := "openai_usage"
		if st.seen&gkResponses != 0 {
			field = "openai_responses_usage"
		}
		if f, reason := st.iu.quantities(&ev.Quantities, &openAINames); reason != "" {
			return gwReason(idx, field+dotted(f), reason)
		}
	case gkAnthropic:
		if f, reason := st.au.quantities(&ev.Quantities); reason != "" {
			return gwReason(idx, "anthropic_usage"+dotted(f), reason)
		}
	default:
		return gwReason(idx, "usage", "more than one of usage, openai_usage, openai_responses_usage, anthropic_usage")
	}
	if st.seen&gkUsage == 0 {
		// A provider usage object describes one API response: one
		// request, as in the LiteLLM and OpenRouter decoders. (With
		// explicit "usage" the gateway states requests itself.)
		ev.Quantities[UnitRequests] = 1
	}
	if st.cost != nil {
		d, reason := parseCost(st.cost)
		if reason != "" {
			return gwReason(idx, "reported_cost", reason)
		}
		ev.ReportedCost = decimal.NullDecimal{Decimal: d, Valid: true}
	}

	// One backing string for all string fields. The scratch buffer lives
	// on the stack unless the strings outgrow it; string() then copies it
	// once into the event's only string allocation.
	var scratch [512]byte
	b := scratch[:0]
	var offs [5][2]int32
	for i, sp := range [...]*strSpan{&st.id, &st.customer, &st.prov, &st.model, &st.tier} {
		offs[i][0] = int32(len(b))
		b = appendSpan(b, sp)
		offs[i][1] = int32(len(b))
	}
	// Dimension bounds: offsets rather than separators, since a decoded
	// value may contain any byte, NUL included.
	var dimEnds [maxDimensions][2]int32
	for i := 0; i < st.nd; i++ {
		d := st.dim(i)
		b = appendSpan(b, &d[0])
		dimEnds[i][0] = int32(len(b))
		b = appendSpan(b, &d[1])
		dimEnds[i][1] = int32(len(b))
	}
	all := string(b)
	sub := func(i int) string { return all[offs[i][0]:offs[i][1]] }
	ev.ID, ev.CustomerID, ev.Provider, ev.Model = sub(0), sub(1), sub(2), sub(3)
	if st.hasTier {
		t, err := ParseTier(sub(4))
		if err != nil {
			return gwReason(idx, "service_tier", err.Error())
		}
		ev.Tier = t
	} else if st.seen&gkAnthropic != 0 && st.au.tier.isSet() {
		raw := st.au.tier.raw
		if st.au.tier.esc {
			raw = appendUnescaped(nil, raw)
		}
		t, err := ParseTier(string(raw))
		if err != nil {
			return gwReason(idx, "anthropic_usage.service_tier", err.Error())
		}
		ev.Tier = t
	}
	if st.nd > 0 {
		dims := make([]Dimension, st.nd)
		p := offs[4][1]
		for i := range dims {
			dims[i].Key = all[p:dimEnds[i][0]]
			dims[i].Value = all[dimEnds[i][0]:dimEnds[i][1]]
			p = dimEnds[i][1]
			for j := 0; j < i; j++ {
				if dims[j].Key == dims[i].Key {
					return gwReason(idx, "dimensions."+dims[i].Key, "duplicate key")
				}
			}
		}
		ev.Dimensions = dims
	}
	ev.Source = SourceGateway
	return nil
}

func appendSpan(b []byte, sp *strSpan) []byte {
	if sp.esc {
		return appendUnescaped(b, sp.raw)
	}
	return append(b, sp.raw...)
}
