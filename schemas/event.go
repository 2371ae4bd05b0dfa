// Package schemas holds tariff's normalized usage event, its decoders and the
// DDL and JSON Schema files that describe what tariff reads and writes.
package schemas

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// Unit is one billable unit type. Token units are exclusive: a token is
// counted in exactly one of them, so that summing the lines of a rated event
// never bills a token twice. Decoders convert each provider's inclusive or
// exclusive convention into these exclusive buckets.
type Unit uint8

const (
	// UnitInput is uncached text input tokens (prompt minus cache reads,
	// cache writes, audio and image input).
	UnitInput Unit = iota
	// UnitCachedInput is input tokens read from a prompt cache.
	UnitCachedInput
	// UnitCacheWrite5m is input tokens written to a 5-minute prompt cache
	// (the default cache-write rate where a provider has only one).
	UnitCacheWrite5m
	// UnitCacheWrite1h is input tokens written to a 1-hour prompt cache.
	UnitCacheWrite1h
	// UnitOutput is text output tokens excluding reasoning, audio and image.
	UnitOutput
	// UnitReasoning is reasoning ("thinking") output tokens.
	UnitReasoning
	// UnitAudioInput is audio input tokens.
	UnitAudioInput
	// UnitAudioOutput is audio output tokens.
	UnitAudioOutput
	// UnitImageInput is image input tokens.
	UnitImageInput
	// UnitImageOutput is image output tokens.
	UnitImageOutput
	// UnitRequests is a count of requests (per-request prices).
	UnitRequests
	// UnitWebSearch is a count of web-search queries.
	UnitWebSearch
	// UnitImages is a count of generated images (per-image prices).
	UnitImages
	// UnitSeconds is seconds of audio or video (per-second prices).
	UnitSeconds

	// NumUnits is the number of unit types; arrays indexed by Unit use it.
	NumUnits
)

var unitNames = [NumUnits]string{
	UnitInput:        "input",
	UnitCachedInput:  "cached_input",
	UnitCacheWrite5m: "cache_write_5m",
	UnitCacheWrite1h: "cache_write_1h",
	UnitOutput:       "output",
	UnitReasoning:    "reasoning",
	UnitAudioInput:   "audio_input",
	UnitAudioOutput:  "audio_output",
	UnitImageInput:   "image_input",
	UnitImageOutput:  "image_output",
	UnitRequests:     "requests",
	UnitWebSearch:    "web_search",
	UnitImages:       "images",
	UnitSeconds:      "seconds",
}

// String returns the unit's wire name, as used in JSON and ClickHouse.
func (u Unit) String() string {
	if u < NumUnits {
		return unitNames[u]
	}
	return fmt.Sprintf("unit(%d)", u)
}

// IsToken reports whether the unit counts tokens (as opposed to requests,
// queries, images or seconds).
func (u Unit) IsToken() bool { return u <= UnitImageOutput }

// ParseUnit maps a wire name back to its Unit.
func ParseUnit(s string) (Unit, bool) {
	for i, n := range unitNames {
		if n == s {
			return Unit(i), true
		}
	}
	return 0, false
}

// Tier is the provider's service tier, which selects batch, flex or priority
// prices where the price list has them.
type Tier uint8

const (
	TierStandard Tier = iota
	TierBatch
	TierFlex
	TierPriority

	NumTiers
)

var tierNames = [NumTiers]string{"standard", "batch", "flex", "priority"}

func (t Tier) String() string {
	if t < NumTiers {
		return tierNames[t]
	}
	return fmt.Sprintf("tier(%d)", t)
}

// ParseTier maps a provider's service-tier word to a Tier. Words that mean
// "the default tier" (OpenAI's "auto", "default", "scale"; empty) map to
// TierStandard.
func ParseTier(s string) (Tier, error) {
	switch s {
	case "", "standard", "default", "auto", "scale", "on_demand":
		return TierStandard, nil
	case "batch":
		return TierBatch, nil
	case "flex":
		return TierFlex, nil
	case "priority", "fast":
		return TierPriority, nil
	}
	return 0, fmt.Errorf("service tier %q: expected one of standard, batch, flex, priority", s)
}

// Dimension is one free-form attribute of an event (team, project, API key,
// region...), kept for slicing usage in ClickHouse.
type Dimension struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Source names the kind of input an event came from.
type Source string

const (
	SourceGateway    Source = "gateway"
	SourceLiteLLM    Source = "litellm"
	SourceOpenRouter Source = "openrouter"
	SourceMeter      Source = "meter"
)

// UsageEvent is one normalized usage record: the only shape the rating and
// balance stages see, whatever format the source spoke.
type UsageEvent struct {
	// ID is the idempotency key: stable across retries and redeliveries, and
	// the key deduplication uses.
	ID string
	// Time is when the usage happened (not when tariff saw it); prices in
	// force at this time rate the event.
	Time time.Time
	// CustomerID is who pays. Required.
	CustomerID string
	// Dimensions are optional attributes, in the order the source gave them.
	Dimensions []Dimension
	// Provider is the model provider as reported ("openai", "anthropic"...),
	// possibly empty when the model name carries it ("openai/gpt-4o").
	Provider string
	// Model is the model name as reported by the source.
	Model string
	// Tier is the service tier the provider applied.
	Tier Tier
	// Quantities holds the exclusive count per unit type.
	Quantities [NumUnits]int64
	// ReportedCost is the partner's own cost figure in USD, when the source
	// gave one. It is kept for reconciliation and never used as the price.
	ReportedCost decimal.NullDecimal
	// Source is the kind of input the event came from.
	Source Source
}

// Limits for Validate. An event outside them is refused with a reason and
// sent to the dead-letter topic, never silently clamped.
const (
	// MaxFutureSkew is how far in the future an event time may be.
	MaxFutureSkew = 24 * time.Hour
	// MaxQuantity bounds one unit's count in one event (10^12 tokens is far
	// beyond any real request and keeps every product in range).
	MaxQuantity = 1_000_000_000_000
	// MaxIDLen bounds the idempotency key and customer id length.
	MaxIDLen = 512
)

// ValidationError says which field of an event is impossible and why.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// Validate checks the event for values no real usage can have. now is the
// caller's clock (passed in so validation stays deterministic in tests).
func (e *UsageEvent) Validate(now time.Time) error {
	switch {
	case e.ID == "":
		return &ValidationError{"id", "missing idempotency key"}
	case len(e.ID) > MaxIDLen:
		return &ValidationError{"id", fmt.Sprintf("longer than %d bytes", MaxIDLen)}
	case e.CustomerID == "":
		return &ValidationError{"customer_id", "missing customer id"}
	case len(e.CustomerID) > MaxIDLen:
		return &ValidationError{"customer_id", fmt.Sprintf("longer than %d bytes", MaxIDLen)}
	case e.Model == "":
		return &ValidationError{"model", "missing model"}
	case e.Time.IsZero():
		return &ValidationError{"time", "missing event time"}
	case e.Time.After(now.Add(MaxFutureSkew)):
		return &ValidationError{"time", fmt.Sprintf("%s is more than %s in the future", e.Time.UTC().Format(time.RFC3339), MaxFutureSkew)}
	case e.Tier >= NumTiers:
		return &ValidationError{"service_tier", fmt.Sprintf("unknown tier %d", e.Tier)}
	}
	for u, q := range e.Quantities {
		if q < 0 {
			return &ValidationError{Unit(u).String(), fmt.Sprintf("negative quantity %d", q)}
		}
		if q > MaxQuantity {
			return &ValidationError{Unit(u).String(), fmt.Sprintf("quantity %d exceeds %d", q, int64(MaxQuantity))}
		}
	}
	// An event whose counts are all zero (a failed request, say) is valid:
	// it rates to no lines and costs nothing, and refusing it would only
	// fill the dead-letter topic with noise.
	return nil
}
