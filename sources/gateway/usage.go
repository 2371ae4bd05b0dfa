package gateway

import (
	"bytes"

	"github.com/tariff-dev/tariff/schemas"
)

// usageKind says which provider usage object an event embeds; the schemas
// gateway decoder normalizes each into exclusive token buckets.
type usageKind uint8

const (
	usageNone      usageKind = iota
	usageOpenAI              // Chat Completions "usage": openai_usage
	usageResponses           // Responses "usage": openai_responses_usage
	usageAnthropic           // Messages "usage": anthropic_usage
)

var usageField = [...]string{
	usageOpenAI:    "openai_usage",
	usageResponses: "openai_responses_usage",
	usageAnthropic: "anthropic_usage",
}

// usage is what a response reported: its id, model and tier, and the raw
// usage object(s), copied out of the response so they outlive its buffers.
type usage struct {
	kind  usageKind
	id    string
	model string
	tier  string
	// raw is the usage object; for an Anthropic stream, message_start's.
	raw []byte
	// final is an Anthropic stream's last message_delta usage (cumulative
	// counts, later fields win over raw's): nil when none arrived.
	final []byte
	// cost is OpenRouter's usage.cost (a JSON number), kept for
	// reconciliation as reported_cost.
	cost []byte
	// failed: the upstream reported an error in the response or stream.
	failed bool
}

func (u *usage) has() bool { return u.kind != usageNone }

func (u *usage) reset() {
	raw, final := u.raw[:0], u.final[:0]
	*u = usage{raw: raw, final: final}
}

// setRaw copies v into u.raw (its capacity is reused between requests).
func (u *usage) setRaw(k usageKind, v []byte) {
	u.kind = k
	u.raw = append(u.raw[:0], v...)
}

// takeTier keeps a service tier the schemas decoder accepts; another word
// is dropped (rated at standard prices) rather than making the event
// undecodable.
func (u *usage) takeTier(v []byte) {
	if v == nil || isNull(v) {
		return
	}
	if s, ok := jsonString(v); ok {
		if _, err := schemas.ParseTier(s); err == nil {
			u.tier = s
		}
	}
}

func (u *usage) takeIDModel(id, model []byte) {
	if id != nil && u.id == "" {
		u.id, _ = jsonString(id)
	}
	if model != nil && u.model == "" {
		u.model, _ = jsonString(model)
	}
}

var respFields = []string{"id", "model", "usage", "service_tier", "type", "error"}

// fromBody reads the usage of a non-streaming response body of api a. It
// returns false when the body has no usage (an error response, say).
func (u *usage) fromBody(a api, body []byte) bool {
	var v [6][]byte
	if fields(body, respFields, v[:]) != nil {
		return false
	}
	u.takeIDModel(v[0], v[1])
	u.failed = v[5] != nil && !isNull(v[5])
	if !isObject(v[2]) {
		return false
	}
	switch a {
	case apiChat:
		u.setRaw(usageOpenAI, v[2])
		u.takeTier(v[3])
	case apiResponses:
		u.setRaw(usageResponses, v[2])
		u.takeTier(v[3])
	case apiMessages:
		u.setRaw(usageAnthropic, v[2])
	}
	return true
}

// takeCost keeps usage.cost (OpenRouter's charge) when it is a number.
func (u *usage) takeCost() {
	var v [1][]byte
	if fields(u.raw, []string{"cost"}, v[:]) == nil && isNumber(v[0]) {
		u.cost = append(u.cost[:0], v[0]...)
	}
}

// tap watches a stream's events for usage, and says which event to keep
// from the caller. One per streamed response; not safe for concurrent use.
type tap struct {
	api api
	// injected: the gateway asked for include_usage, so the usage-only
	// chunk is the gateway's, not the caller's, and is dropped.
	injected bool
	u        *usage
}

var (
	quotedUsage = []byte(`"usage"`)
	quotedError = []byte(`"error"`)
	doneData    = []byte("[DONE]")
)

// observe inspects one event (its name and data) and returns true when the
// caller must not see it. Only events whose data can carry usage are
// parsed; text deltas are passed over with one substring search. (Inside a
// JSON string a quote is escaped, so `"usage"` in generated text never
// matches.)
func (t *tap) observe(name, data []byte) (drop bool) {
	if len(data) == 0 || bytes.Equal(data, doneData) {
		return false
	}
	switch t.api {
	case apiChat:
		return t.chat(data)
	case apiResponses:
		t.responses(data)
	case apiMessages:
		t.messages(name, data)
	}
	return false
}

var chunkFields = []string{"id", "model", "usage", "choices", "service_tier", "error"}

// chat reads a Chat Completions chunk. Every chunk names the id and model;
// with include_usage the last one before [DONE] has empty choices and the
// usage (other chunks carry "usage": null).
func (t *tap) chat(data []byte) bool {
	hasUsage := bytes.Contains(data, quotedUsage)
	if !hasUsage && t.u.id != "" && !bytes.Contains(data, quotedError) {
		return false
	}
	var v [6][]byte
	if fields(data, chunkFields, v[:]) != nil {
		return false
	}
	t.u.takeIDModel(v[0], v[1])
	if v[5] != nil && !isNull(v[5]) {
		t.u.failed = true
	}
	if !isObject(v[2]) {
		return false
	}
	t.u.setRaw(usageOpenAI, v[2])
	t.u.takeTier(v[4])
	// Only a chunk that is nothing but usage is dropped: a provider that
	// puts usage on its last content chunk must still deliver the content.
	return t.injected && (v[3] == nil || isEmptyArray(v[3]))
}

var eventFields = []string{"type", "response", "message", "usage", "error"}

// responses reads a Responses stream event. The final response.completed
// (or response.incomplete / response.failed) carries the whole response
// with its usage; earlier events carry "usage": null.
func (t *tap) responses(data []byte) {
	if !bytes.Contains(data, quotedUsage) && !bytes.Contains(data, quotedError) {
		return
	}
	var v [5][]byte
	if fields(data, eventFields, v[:]) != nil {
		return
	}
	typ, _ := jsonString(v[0])
	switch typ {
	case "error", "response.failed":
		t.u.failed = true
	}
	if !isObject(v[1]) {
		return
	}
	var r [6][]byte
	if fields(v[1], respFields, r[:]) != nil {
		return
	}
	t.u.takeIDModel(r[0], r[1])
	if isObject(r[2]) {
		t.u.setRaw(usageResponses, r[2])
		t.u.takeTier(r[3])
	}
}

var (
	typeMessageStart = []byte(`"message_start"`)
	typeMessageDelta = []byte(`"message_delta"`)
)

// messages reads an Anthropic stream event: message_start carries the
// input and cache counts, every message_delta the cumulative usage so far.
func (t *tap) messages(name, data []byte) {
	start := string(name) == "message_start" || (len(name) == 0 && bytes.Contains(data, typeMessageStart))
	delta := string(name) == "message_delta" || (len(name) == 0 && bytes.Contains(data, typeMessageDelta))
	if string(name) == "error" {
		t.u.failed = true
		return
	}
	if !start && !delta {
		return
	}
	var v [5][]byte
	if fields(data, eventFields, v[:]) != nil {
		return
	}
	if start {
		if !isObject(v[2]) {
			return
		}
		var m [6][]byte
		if fields(v[2], respFields, m[:]) != nil {
			return
		}
		t.u.takeIDModel(m[0], m[1])
		if isObject(m[2]) {
			t.u.setRaw(usageAnthropic, m[2])
		}
		return
	}
	if isObject(v[3]) {
		t.u.final = append(t.u.final[:0], v[3]...)
		if t.u.kind == usageNone {
			// A delta without a message_start (never seen from Anthropic):
			// it is the only usage there is.
			t.u.setRaw(usageAnthropic, v[3])
			t.u.final = t.u.final[:0]
		}
	}
}
