package rating

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/schemas"
)

// Version is one price list in force from EffectiveFrom until the next
// version's EffectiveFrom. A sync that finds changes adds a version; it
// never edits one, so re-rating an old event gives the same result.
type Version struct {
	ID            string
	EffectiveFrom time.Time
	Prices        *Snapshot
}

// Book holds every price version, ordered by effective time, and the alias
// table used to resolve model names. A Book is immutable: updates build a
// new Book (With), which the pipeline publishes through a BookRef.
type Book struct {
	versions []*Version
	byID     map[string]*Version
	aliases  Aliases
}

// NewBook builds a book. Version ids must be unique and effective times
// distinct (two versions in force at the same instant would make the
// choice arbitrary). aliases may be nil.
func NewBook(aliases Aliases, versions ...*Version) (*Book, error) {
	b := &Book{
		versions: append([]*Version(nil), versions...),
		byID:     make(map[string]*Version, len(versions)),
		aliases:  aliases,
	}
	sort.SliceStable(b.versions, func(i, j int) bool {
		return b.versions[i].EffectiveFrom.Before(b.versions[j].EffectiveFrom)
	})
	for i, v := range b.versions {
		switch {
		case v.ID == "":
			return nil, errors.New("price version: empty id")
		case v.Prices == nil:
			return nil, fmt.Errorf("price version %s: no prices", v.ID)
		case b.byID[v.ID] != nil:
			return nil, fmt.Errorf("price version %s: id used twice", v.ID)
		case i > 0 && v.EffectiveFrom.Equal(b.versions[i-1].EffectiveFrom):
			return nil, fmt.Errorf("price versions %s and %s: same effective time %s", b.versions[i-1].ID, v.ID, v.EffectiveFrom.UTC().Format(time.RFC3339))
		}
		b.byID[v.ID] = v
	}
	return b, nil
}

// With returns a new book with v added; b is unchanged.
func (b *Book) With(v *Version) (*Book, error) {
	return NewBook(b.aliases, append(append([]*Version(nil), b.versions...), v)...)
}

// WithAliases returns a new book with the alias table replaced.
func (b *Book) WithAliases(a Aliases) *Book {
	nb := *b
	nb.aliases = a
	return &nb
}

// Versions returns the versions in effective-time order (do not modify).
func (b *Book) Versions() []*Version { return b.versions }

// Version returns the version with this id, or nil.
func (b *Book) Version(id string) *Version { return b.byID[id] }

// Latest returns the version with the latest effective time, or nil.
func (b *Book) Latest() *Version {
	if len(b.versions) == 0 {
		return nil
	}
	return b.versions[len(b.versions)-1]
}

// VersionAt returns the version in force at t: the last one whose
// EffectiveFrom is not after t. Nil when t predates every version (give the
// first version a zero EffectiveFrom to cover all history).
func (b *Book) VersionAt(t time.Time) *Version {
	vs := b.versions
	// Binary search by hand: sort.Search's closure would escape.
	lo, hi := 0, len(vs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if !vs[m].EffectiveFrom.After(t) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return nil
	}
	return vs[lo-1]
}

// PriceAt resolves a model in the version in force at t, so a late event
// is priced as it would have been on time.
func (b *Book) PriceAt(model, provider string, t time.Time) (*ModelPrice, *Version, error) {
	v := b.VersionAt(t)
	if v == nil {
		return nil, nil, &RateError{Kind: ErrNoPriceVersion, Provider: provider, Model: model, Reason: "the time predates the first price version"}
	}
	mp := v.Prices.Lookup(provider, model, b.aliases)
	if mp == nil {
		return nil, v, &RateError{Kind: ErrUnknownModel, Provider: provider, Model: model, PriceVersion: v.ID}
	}
	return mp, v, nil
}

// BookRef publishes the current Book to the pipeline. Store swaps a whole
// new book in one atomic pointer write: readers never wait, and each event
// (Rater.Rate loads once) sees either the old book or the new one, never a
// mix. Build the new book fully (parse, compile, index) before Store.
type BookRef struct {
	p atomic.Pointer[Book]
}

// NewBookRef returns a ref holding b.
func NewBookRef(b *Book) *BookRef {
	r := &BookRef{}
	r.p.Store(b)
	return r
}

// Load returns the current book.
func (r *BookRef) Load() *Book { return r.p.Load() }

// Store publishes b.
func (r *BookRef) Store(b *Book) { r.p.Store(b) }

// ChangeKind classifies one price difference between two snapshots.
type ChangeKind uint8

const (
	ChangeModelAdded ChangeKind = iota
	ChangeModelRemoved
	ChangePriceAdded   // a unit gained a price
	ChangePriceRemoved // a unit lost its price
	ChangePriceUp
	ChangePriceDown
)

var changeNames = [...]string{"model_added", "model_removed", "price_added", "price_removed", "price_up", "price_down"}

func (k ChangeKind) String() string {
	if int(k) < len(changeNames) {
		return changeNames[k]
	}
	return fmt.Sprintf("change(%d)", k)
}

func (k ChangeKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind as MarshalText writes it (consumers of
// price-change events decode them).
func (k *ChangeKind) UnmarshalText(b []byte) error {
	for i, n := range changeNames {
		if n == string(b) {
			*k = ChangeKind(i)
			return nil
		}
	}
	return fmt.Errorf("price change kind %q: expected one of %s", b, strings.Join(changeNames[:], ", "))
}

// Change is one difference found by Diff.
type Change struct {
	Kind  ChangeKind `json:"kind"`
	Model string     `json:"model"`
	// Condition is "" for the base price, else the rule it belongs to
	// ("above 200000 prompt tokens", "utc 16:30-00:30").
	Condition string       `json:"condition,omitempty"`
	Tier      schemas.Tier `json:"-"`
	Unit      schemas.Unit `json:"-"`
	TierName  string       `json:"tier,omitempty"`
	UnitName  string       `json:"unit,omitempty"`
	Old       *Price       `json:"old,omitempty"`
	New       *Price       `json:"new,omitempty"`
	// Relative is (new − old) / old, rounded to 6 decimals for display
	// (0.5 = +50%); zero when either side is missing or old is 0.
	Relative decimal.Decimal `json:"relative"`
}

// Diff lists what changed from old to new: models added and removed, and
// for models in both every stated price added, removed, raised or cut,
// per rule, tier and unit. Order: by model key, then condition, tier, unit.
func Diff(old, new *Snapshot) []Change {
	var out []Change
	i, j := 0, 0
	for i < len(old.Prices) || j < len(new.Prices) {
		switch {
		case j == len(new.Prices) || (i < len(old.Prices) && old.Prices[i].Key < new.Prices[j].Key):
			out = append(out, Change{Kind: ChangeModelRemoved, Model: old.Prices[i].Key})
			i++
		case i == len(old.Prices) || new.Prices[j].Key < old.Prices[i].Key:
			out = append(out, Change{Kind: ChangeModelAdded, Model: new.Prices[j].Key})
			j++
		default:
			out = diffModel(out, old.Prices[i], new.Prices[j])
			i, j = i+1, j+1
		}
	}
	return out
}

func ruleCondition(r *Rule) string {
	var parts []string
	if r.AbovePromptTokens != NoPromptCondition {
		parts = append(parts, fmt.Sprintf("above %d prompt tokens", r.AbovePromptTokens))
	}
	if r.Window != nil {
		parts = append(parts, fmt.Sprintf("utc %02d:%02d-%02d:%02d", r.Window.Start/60, r.Window.Start%60, r.Window.End/60, r.Window.End%60))
	}
	if len(parts) == 0 {
		return "always"
	}
	return strings.Join(parts, ", ")
}

func layersOf(m *ModelPrice) ([]string, map[string]*Rates) {
	conds := []string{""}
	byCond := map[string]*Rates{"": &m.Base}
	for i := range m.Rules {
		c := ruleCondition(&m.Rules[i])
		if _, dup := byCond[c]; !dup {
			conds = append(conds, c)
		}
		byCond[c] = &m.Rules[i].Rates // a later duplicate rule wins, as in rating
	}
	return conds, byCond
}

func diffModel(out []Change, a, b *ModelPrice) []Change {
	ca, la := layersOf(a)
	cb, lb := layersOf(b)
	set := map[string]bool{}
	for _, c := range append(ca, cb...) {
		set[c] = true
	}
	conds := make([]string, 0, len(set))
	for c := range set {
		conds = append(conds, c)
	}
	sort.Strings(conds)
	var empty Rates
	for _, c := range conds {
		ra, rb := la[c], lb[c]
		if ra == nil {
			ra = &empty
		}
		if rb == nil {
			rb = &empty
		}
		for t := schemas.Tier(0); t < schemas.NumTiers; t++ {
			for u := schemas.Unit(0); u < schemas.NumUnits; u++ {
				pa, oka := ra[t].Get(u)
				pb, okb := rb[t].Get(u)
				ch := Change{Model: a.Key, Condition: c, Tier: t, Unit: u, TierName: t.String(), UnitName: u.String()}
				switch {
				case !oka && !okb:
					continue
				case !oka:
					ch.Kind, ch.New = ChangePriceAdded, &pb
				case !okb:
					ch.Kind, ch.Old = ChangePriceRemoved, &pa
				case pa.Cmp(pb) == 0:
					continue
				default:
					ch.Kind, ch.Old, ch.New = ChangePriceUp, &pa, &pb
					if pb.Cmp(pa) < 0 {
						ch.Kind = ChangePriceDown
					}
					if !pa.IsZero() {
						ch.Relative = pb.Decimal().Sub(pa.Decimal()).DivRound(pa.Decimal(), 6)
					}
				}
				out = append(out, ch)
			}
		}
	}
	return out
}

// versionJSON is the stored form of a Version: prices as decimal strings,
// conditions and tiers spelled out, so a stored version stays readable and
// reloads into exactly the same tables.
type versionJSON struct {
	ID            string        `json:"id"`
	EffectiveFrom time.Time     `json:"effective_from"`
	Source        Format        `json:"source"`
	Prices        []*ModelPrice `json:"prices"`
	Rejected      []rejectJSON  `json:"rejected,omitempty"`
}

type rejectJSON struct {
	Model  string `json:"model"`
	Field  string `json:"field"`
	Value  string `json:"value"`
	Reason string `json:"reason"`
}

// MarshalVersion serializes v for storage (Badger); the caller stores it.
func MarshalVersion(v *Version) ([]byte, error) {
	j := versionJSON{ID: v.ID, EffectiveFrom: v.EffectiveFrom.UTC(), Source: v.Prices.Source, Prices: v.Prices.Prices}
	for _, r := range v.Prices.Rejected {
		j.Rejected = append(j.Rejected, rejectJSON{r.Model, r.Field, r.Value, r.Err.Error()})
	}
	return json.Marshal(j)
}

// UnmarshalVersion rebuilds a version (compiling its tables and index)
// from MarshalVersion's output.
func UnmarshalVersion(data []byte) (*Version, error) {
	var j versionJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("decode price version: %w", err)
	}
	s, err := NewSnapshot(j.Source, j.Prices)
	if err != nil {
		return nil, fmt.Errorf("decode price version %s: %w", j.ID, err)
	}
	for _, r := range j.Rejected {
		s.Rejected = append(s.Rejected, &EntryError{r.Model, r.Field, r.Value, errors.New(r.Reason)})
	}
	return &Version{ID: j.ID, EffectiveFrom: j.EffectiveFrom, Prices: s}, nil
}
