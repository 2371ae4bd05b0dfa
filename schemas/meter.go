package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
)

// Self-reported meter records, Amberflo-style: a JSON array (or one object,
// or NDJSON) of
//
//	{"customerId": "...", "meterApiName": "llm_text_tokens", "meterValue": 1200,
//	 "meterTimeInMillis": 1771718400123, "uniqueId": "...",
//	 "dimensions": {"type": "in", "cache": "n", "model": "...", ...}}
//
// One record becomes one event holding one unit. The meter name and the
// dimensions pick the unit (Amberflo's LiteLLM mapping):
//
//	llm_text_tokens       type=in  cache=n (or absent) -> input
//	                      type=in  cache=r             -> cached_input
//	                      type=in  cache=c             -> cache_write_5m (cache_ttl=1h: cache_write_1h)
//	                      type=out cache=n (or absent) -> output (excluding reasoning)
//	llm_reasoning_tokens  type=out (or absent)         -> reasoning
//	llm_audio_tokens      type=in / out                -> audio_input / audio_output
//	llm_image_tokens      type=in / out                -> image_input / image_output
//	llm_api_call, llm_requests                         -> requests (send one of them, not both)
//	llm_seconds                                        -> seconds
//	llm_api_call_ms, aflo.object_metadata              -> no event (latency, metadata)
//
// Every other meter name (llm_citation_tokens, llm_characters, llm_pixels
// included) is refused with a DecodeError naming it: tariff has no unit for
// it yet, and a silently dropped meter would be unbilled usage.
//
// The counts are exclusive by construction: a sender reports 1,200 uncached,
// 8,000 cache-read and 2,000 cache-write input tokens as three records.
// meterValue must be an integer (parsed from its text, never via float64);
// "1200.0" is accepted, "12.5" refused.
//
// tier (n, flex, priority; also standard/batch words) and batch (y/n) pick
// the service tier; model (required) and provider are taken from the
// dimensions. The remaining dimensions are kept, in order, except the one
// used as customer id.
//
// Idempotency key. A sender reuses uniqueId for all the records of one
// request (one per unit), so uniqueId alone would collapse them. The key is
//
//	"meter:" + uniqueId (first 200 bytes) + ":" + hex(sha256(customer, uniqueId,
//	meterApiName, unit, tier, model, provider)[:16])
//
// where unit and tier are the normalized values (cache=n and an absent
// cache give the same key). The customer is part of the hash because
// uniqueIds come from many customers' own code and may collide. Without a
// uniqueId the key hashes the whole record (customer, meter, value, time and
// every dimension, sorted): a retry deduplicates only if resent identically.

const meterName = "meter"

type meterDecoder struct {
	opts DecodeOptions
	// customerDims are the dimension keys named by MeterCustomerFields, in
	// order ("" for customerId).
	customerFields []string
}

func newMeterDecoder(opts DecodeOptions) *meterDecoder {
	d := &meterDecoder{opts: opts}
	for _, f := range opts.MeterCustomerFields {
		if f == "customerId" {
			d.customerFields = append(d.customerFields, "")
		} else {
			d.customerFields = append(d.customerFields, strings.TrimPrefix(f, "dimensions."))
		}
	}
	return d
}

func (d *meterDecoder) Name() string { return meterName }

func meterErr(idx int, field, reason string) error {
	return &DecodeError{Decoder: meterName, Index: idx, Field: field, Reason: reason}
}

func (d *meterDecoder) Decode(dst []UsageEvent, msg []byte) ([]UsageEvent, error) {
	n0 := len(dst)
	s := scanner{data: msg}
	idx, err := s.records(func(idx int) error {
		var ev UsageEvent
		ok, err := d.record(&s, idx, &ev)
		if err != nil {
			return err
		}
		if ok {
			dst = append(dst, ev)
		}
		return nil
	})
	if err != nil {
		return dst[:n0], errAt(meterName, idx, "", err)
	}
	return dst, nil
}

type meterRecord struct {
	customer, meter, uniqueID rawValue
	value, timeMs             rawValue
	dims                      []Dimension
	seen                      uint8
}

func (d *meterDecoder) record(s *scanner, idx int, ev *UsageEvent) (bool, error) {
	var r meterRecord
	err := eachMember(s, func(k []byte) error {
		var bit uint8
		var dstVal *rawValue
		switch string(k) {
		case "customerId":
			bit, dstVal = 1, &r.customer
		case "meterApiName":
			bit, dstVal = 2, &r.meter
		case "uniqueId":
			bit, dstVal = 4, &r.uniqueID
		case "meterValue":
			bit, dstVal = 8, &r.value
		case "meterTimeInMillis":
			bit, dstVal = 16, &r.timeMs
		case "dimensions":
			if r.seen&32 != 0 {
				return &fieldErr{field: "dimensions", err: s.errf("duplicate key")}
			}
			r.seen |= 32
			v, err := s.readValue()
			if err != nil {
				return &fieldErr{field: "dimensions", err: err}
			}
			if v.kind == kindNull {
				return nil
			}
			if v.kind != kindObject {
				return &fieldErr{field: "dimensions", err: s.errf("expected an object, got " + kindName(v.kind))}
			}
			dims, f, reason := stringMap(v)
			if reason != "" {
				return &fieldErr{field: "dimensions" + dotted(f), err: s.errf(reason)}
			}
			r.dims = dims
			return nil
		default:
			return s.skipValue()
		}
		if r.seen&bit != 0 {
			return &fieldErr{field: string(k), err: s.errf("duplicate key")}
		}
		r.seen |= bit
		v, err := s.readValue()
		*dstVal = v
		if err != nil {
			return &fieldErr{field: string(k), err: err}
		}
		return nil
	})
	if err != nil {
		return false, errAt(meterName, idx, "", err)
	}
	return d.event(idx, &r, ev)
}

// dimension returns the value of a dimension key, or "".
func (r *meterRecord) dimension(key string) string {
	for _, d := range r.dims {
		if d.Key == key {
			return d.Value
		}
	}
	return ""
}

// meterUnitDims are the dimensions that select the unit, tier, model and
// provider; they are not copied to the event's dimensions.
var meterUnitDims = []string{"type", "cache", "cache_ttl", "tier", "batch", "model", "provider"}

func (d *meterDecoder) event(idx int, r *meterRecord, ev *UsageEvent) (bool, error) {
	meter, reason := r.meter.text(false)
	if reason != "" {
		return false, meterErr(idx, "meterApiName", reason)
	}
	if meter == "" {
		return false, meterErr(idx, "meterApiName", "missing meter name")
	}
	switch meter {
	case "llm_api_call_ms", "aflo.object_metadata":
		return false, nil // not billable: latency and record metadata
	}
	unit, field, reason := meterUnit(meter, r)
	if reason != "" {
		return false, meterErr(idx, field, reason)
	}

	// Customer.
	custDim := ""
	for _, f := range d.customerFields {
		var c string
		if f == "" {
			if c, reason = r.customer.text(true); reason != "" {
				return false, meterErr(idx, "customerId", reason)
			}
		} else {
			c = r.dimension(f)
		}
		if c != "" {
			ev.CustomerID, custDim = c, f
			break
		}
	}
	if ev.CustomerID == "" {
		return false, meterErr(idx, d.opts.MeterCustomerFields[0], "missing customer id: none of "+strings.Join(d.opts.MeterCustomerFields, ", ")+" is set")
	}
	if ev.Model = r.dimension("model"); ev.Model == "" {
		return false, meterErr(idx, "dimensions.model", "missing model dimension")
	}
	ev.Provider = r.dimension("provider")

	tier, field, reason := meterTier(r)
	if reason != "" {
		return false, meterErr(idx, field, reason)
	}
	ev.Tier = tier

	if !r.value.present() {
		return false, meterErr(idx, "meterValue", "missing meter value")
	}
	n, reason := r.value.count(false)
	if reason != "" {
		if strings.Contains(reason, "fractional") {
			reason = "expected an integer count for " + meter + ", got fractional " + string(r.value.raw)
		}
		return false, meterErr(idx, "meterValue", reason)
	}
	ev.Quantities[unit] = n

	if !r.timeMs.present() {
		return false, meterErr(idx, "meterTimeInMillis", "missing event time")
	}
	if ev.Time, reason = r.timeMs.epochOrTimestamp(3, "milliseconds", nil); reason != "" {
		return false, meterErr(idx, "meterTimeInMillis", reason)
	}

	uniqueID, reason := r.uniqueID.text(true)
	if reason != "" {
		return false, meterErr(idx, "uniqueId", reason)
	}
	h := sha256.New()
	put := func(parts ...string) {
		for _, p := range parts {
			h.Write([]byte(strconv.Itoa(len(p)))) // length-prefixed: no separator ambiguity
			h.Write([]byte{':'})
			h.Write([]byte(p))
		}
	}
	if uniqueID != "" {
		put("v1", ev.CustomerID, uniqueID, meter, unit.String(), tier.String(), ev.Model, ev.Provider)
		prefix := uniqueID
		if len(prefix) > 200 {
			prefix = prefix[:200]
		}
		ev.ID = "meter:" + prefix + ":" + hex.EncodeToString(h.Sum(nil)[:16])
	} else {
		put("v1-content", ev.CustomerID, meter, string(r.value.raw), ev.Time.UTC().Format("2006-01-02T15:04:05.000000000Z"))
		sorted := slices.Clone(r.dims)
		slices.SortFunc(sorted, func(a, b Dimension) int { return strings.Compare(a.Key, b.Key) })
		for _, dm := range sorted {
			put(dm.Key, dm.Value)
		}
		ev.ID = "meter:h:" + hex.EncodeToString(h.Sum(nil)[:16])
	}

	for _, dm := range r.dims {
		if slices.Contains(meterUnitDims, dm.Key) || (custDim != "" && dm.Key == custDim) {
			continue
		}
		ev.Dimensions = append(ev.Dimensions, dm)
	}
	ev.Source = SourceMeter
	return true, nil
}

// meterUnit maps a meter name and its type/cache dimensions to a Unit.
func meterUnit(meter string, r *meterRecord) (Unit, string, string) {
	typ, cache, ttl := r.dimension("type"), r.dimension("cache"), r.dimension("cache_ttl")
	inOut := func(in, out Unit) (Unit, string, string) {
		switch typ {
		case "in":
			return in, "", ""
		case "out":
			return out, "", ""
		}
		return 0, "dimensions.type", "expected \"in\" or \"out\" for " + meter + ", got " + strconv.Quote(typ)
	}
	noCache := func() (string, string) {
		if cache != "" && cache != "n" {
			return "dimensions.cache", "cache " + strconv.Quote(cache) + " applies to input tokens only; expected \"n\""
		}
		return "", ""
	}
	switch meter {
	case "llm_text_tokens":
		u, f, reason := inOut(UnitInput, UnitOutput)
		if reason != "" {
			return 0, f, reason
		}
		if u == UnitOutput {
			f, reason := noCache()
			return u, f, reason
		}
		switch cache {
		case "", "n":
			return UnitInput, "", ""
		case "r":
			return UnitCachedInput, "", ""
		case "c":
			switch ttl {
			case "", "5m":
				return UnitCacheWrite5m, "", ""
			case "1h":
				return UnitCacheWrite1h, "", ""
			}
			return 0, "dimensions.cache_ttl", "expected \"5m\" or \"1h\", got " + strconv.Quote(ttl)
		}
		return 0, "dimensions.cache", "expected \"n\", \"r\" or \"c\", got " + strconv.Quote(cache)
	case "llm_reasoning_tokens":
		if typ != "" && typ != "out" {
			return 0, "dimensions.type", "reasoning tokens are output; expected \"out\", got " + strconv.Quote(typ)
		}
		f, reason := noCache()
		return UnitReasoning, f, reason
	case "llm_audio_tokens", "llm_image_tokens":
		var u Unit
		var f, reason string
		if meter == "llm_audio_tokens" {
			u, f, reason = inOut(UnitAudioInput, UnitAudioOutput)
		} else {
			u, f, reason = inOut(UnitImageInput, UnitImageOutput)
		}
		if reason == "" {
			f, reason = noCache()
		}
		return u, f, reason
	case "llm_api_call", "llm_requests":
		return UnitRequests, "", ""
	case "llm_seconds":
		return UnitSeconds, "", ""
	case "llm_citation_tokens", "llm_characters", "llm_pixels":
		return 0, "meterApiName", "meter " + strconv.Quote(meter) + " has no tariff unit yet"
	}
	return 0, "meterApiName", "unknown meter " + strconv.Quote(meter) + "; expected one of llm_text_tokens, llm_reasoning_tokens, llm_audio_tokens, llm_image_tokens, llm_api_call, llm_requests, llm_seconds"
}

// meterTier maps the tier and batch dimensions to a Tier.
func meterTier(r *meterRecord) (Tier, string, string) {
	tierDim, batch := r.dimension("tier"), r.dimension("batch")
	tier := TierStandard
	if tierDim != "" && tierDim != "n" {
		t, err := ParseTier(tierDim)
		if err != nil {
			return 0, "dimensions.tier", err.Error()
		}
		tier = t
	}
	switch batch {
	case "", "n":
	case "y":
		if tier != TierStandard && tier != TierBatch {
			return 0, "dimensions.batch", "batch=y conflicts with tier " + strconv.Quote(tierDim)
		}
		tier = TierBatch
	default:
		return 0, "dimensions.batch", "expected \"y\" or \"n\", got " + strconv.Quote(batch)
	}
	return tier, "", ""
}
