package gateway

import (
	"crypto/rand"
	"time"
)

// Outcomes of a request, recorded as the "outcome" dimension.
const (
	outcomeOK            = "ok"
	outcomeUpstreamError = "upstream_error"
	outcomeCancelled     = "cancelled"
)

// eventInput is everything one usage event says.
type eventInput struct {
	id       string
	time     time.Time
	customer string
	provider string
	model    string
	api      api
	upstream string
	outcome  string
	keyID    string
	u        *usage
}

// appendEvent appends one gateway usage event (schemas README, "The gateway
// event format") embedding the provider's raw usage object, so that the
// pipeline normalizes tokens with the same code as every other source:
//
//	{"version":1,"id":"chatcmpl-...","time":"2026-11-20T09:30:00.123Z",
//	 "customer_id":"acme","provider":"openai","model":"gpt-4o-2024-08-06",
//	 "service_tier":"default","dimensions":{"api":"chat_completions",
//	 "upstream":"openai","outcome":"ok","key_id":"3f9a1c2d"},
//	 "openai_usage":{...as the provider returned it...}}
func appendEvent(b []byte, in *eventInput) []byte {
	u := in.u
	b = append(b, `{"version":1,"id":`...)
	b = appendString(b, in.id)
	b = append(b, `,"time":"`...)
	b = in.time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","customer_id":`...)
	b = appendString(b, in.customer)
	b = append(b, `,"provider":`...)
	b = appendString(b, in.provider)
	b = append(b, `,"model":`...)
	b = appendString(b, in.model)
	if u.tier != "" {
		b = append(b, `,"service_tier":`...)
		b = appendString(b, u.tier)
	}
	b = append(b, `,"dimensions":{"api":`...)
	b = appendString(b, in.api.String())
	b = append(b, `,"upstream":`...)
	b = appendString(b, in.upstream)
	b = append(b, `,"outcome":`...)
	b = appendString(b, in.outcome)
	if in.keyID != "" {
		b = append(b, `,"key_id":`...)
		b = appendString(b, in.keyID)
	}
	b = append(b, "},"...)
	if len(u.cost) > 0 {
		b = append(b, `"reported_cost":`...)
		b = append(b, u.cost...)
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, usageField[u.kind]...)
	b = append(b, `":`...)
	if u.kind == usageAnthropic && len(u.final) > 0 {
		// A stream: [message_start usage, last message_delta usage], merged
		// field by field by the decoder, later wins.
		b = append(b, '[')
		b = append(b, u.raw...)
		b = append(b, ',')
		b = append(b, u.final...)
		b = append(b, ']')
	} else {
		b = append(b, u.raw...)
	}
	return append(b, '}')
}

// newEventID returns "gw-" and a random (version 4) UUID: the idempotency
// key of an event whose upstream gave no trustworthy response id.
func newEventID() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails (Go 1.24+)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var b [39]byte
	copy(b[:], "gw-")
	j := 3
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hexDigits[c>>4], hexDigits[c&0xf]
		j += 2
	}
	return string(b[:j])
}
