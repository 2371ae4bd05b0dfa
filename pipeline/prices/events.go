package prices

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// Announcement is what a new price version announces: the version, the one
// it replaces and every change between them. Webhooks receive it whole as
// one POST; the changes topic receives each change as its own ChangeEvent.
type Announcement struct {
	// ID is the price version id: receivers deduplicate on it (a delivery
	// may be repeated after a crash or a timeout).
	ID                string        `json:"id"`
	Type              string        `json:"type"` // "price_version"
	VersionID         string        `json:"version_id"`
	PreviousVersionID string        `json:"previous_version_id"`
	EffectiveFrom     time.Time     `json:"effective_from"`
	DetectedAt        time.Time     `json:"detected_at"`
	Sources           []string      `json:"sources"`
	Summary           Summary       `json:"summary"`
	Changes           []ChangeEvent `json:"changes"`
}

// Summary counts changes by kind.
type Summary struct {
	ModelsAdded   int `json:"models_added"`
	ModelsRemoved int `json:"models_removed"`
	PricesAdded   int `json:"prices_added"`
	PricesRemoved int `json:"prices_removed"`
	PricesUp      int `json:"prices_up"`
	PricesDown    int `json:"prices_down"`
}

// Summarize counts changes by kind.
func Summarize(changes []rating.Change) Summary {
	var s Summary
	for _, c := range changes {
		switch c.Kind {
		case rating.ChangeModelAdded:
			s.ModelsAdded++
		case rating.ChangeModelRemoved:
			s.ModelsRemoved++
		case rating.ChangePriceAdded:
			s.PricesAdded++
		case rating.ChangePriceRemoved:
			s.PricesRemoved++
		case rating.ChangePriceUp:
			s.PricesUp++
		case rating.ChangePriceDown:
			s.PricesDown++
		}
	}
	return s
}

// ChangeEvent is one price change as published on the changes topic
// (message key: the model). Prices are exact decimal strings in USD per
// unit (per token for token units); the per-million fields restate token
// prices per 1M tokens, as price pages show them.
type ChangeEvent struct {
	// ID is deterministic (version, model, condition, tier, unit, kind), so
	// a consumer can drop a change delivered twice.
	ID                string    `json:"id"`
	Type              string    `json:"type"` // "price_change"
	VersionID         string    `json:"version_id"`
	PreviousVersionID string    `json:"previous_version_id"`
	EffectiveFrom     time.Time `json:"effective_from"`
	DetectedAt        time.Time `json:"detected_at"`
	Provider          string    `json:"provider,omitempty"`
	rating.Change
	OldPerMillion string `json:"old_per_million,omitempty"`
	NewPerMillion string `json:"new_per_million,omitempty"`
}

var million = decimal.NewFromInt(1_000_000)

// IsTokenUnit reports whether u is counted in tokens (priced per token),
// as opposed to requests, searches, images or seconds.
func IsTokenUnit(u schemas.Unit) bool {
	switch u {
	case schemas.UnitRequests, schemas.UnitWebSearch, schemas.UnitImages, schemas.UnitSeconds:
		return false
	}
	return true
}

// PerMillion restates a per-token price per 1M tokens, exactly.
func PerMillion(p rating.Price) decimal.Decimal { return p.Decimal().Mul(million) }

func changeID(versionID string, c *rating.Change) string {
	h := sha256.New()
	for _, s := range []string{versionID, c.Kind.String(), c.Model, c.Condition, c.TierName, c.UnitName} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// newAnnouncement builds the announcement of v replacing prev.
func newAnnouncement(prev, v *rating.Version, changes []rating.Change, sources []string, detected time.Time) *Announcement {
	a := &Announcement{
		ID: v.ID, Type: "price_version", VersionID: v.ID, PreviousVersionID: prev.ID,
		EffectiveFrom: v.EffectiveFrom.UTC(), DetectedAt: detected.UTC(), Sources: sources,
		Summary: Summarize(changes), Changes: make([]ChangeEvent, len(changes)),
	}
	for i := range changes {
		c := changes[i]
		e := ChangeEvent{
			ID: changeID(v.ID, &c), Type: "price_change", VersionID: v.ID, PreviousVersionID: prev.ID,
			EffectiveFrom: a.EffectiveFrom, DetectedAt: a.DetectedAt, Change: c,
		}
		if mp := v.Prices.Get(c.Model); mp != nil {
			e.Provider = mp.Provider
		} else if mp := prev.Prices.Get(c.Model); mp != nil {
			e.Provider = mp.Provider
		}
		if c.Kind != rating.ChangeModelAdded && c.Kind != rating.ChangeModelRemoved && IsTokenUnit(c.Unit) {
			if c.Old != nil {
				e.OldPerMillion = PerMillion(*c.Old).String()
			}
			if c.New != nil {
				e.NewPerMillion = PerMillion(*c.New).String()
			}
		}
		a.Changes[i] = e
	}
	return a
}
