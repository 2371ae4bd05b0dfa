package rating

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Snapshot is one imported price list: its entries, sorted by key, and the
// lookup index built from them. It is immutable once built and safe for any
// number of concurrent readers.
type Snapshot struct {
	Source Format
	// Prices are the imported entries in key order.
	Prices []*ModelPrice
	// Rejected lists entries that could not be imported exactly. A sync
	// must surface them (log, alert); they are not in Prices.
	Rejected []*EntryError

	exact   map[string]*ModelPrice // key as listed
	norm    map[string]*ModelPrice // normalized key
	undated map[string]*ModelPrice // normalized key without its date → latest dated entry
}

// NewSnapshot compiles the entries and builds the lookup index.
func NewSnapshot(source Format, prices []*ModelPrice) (*Snapshot, error) {
	s := &Snapshot{
		Source:  source,
		Prices:  prices,
		exact:   make(map[string]*ModelPrice, len(prices)),
		norm:    make(map[string]*ModelPrice, len(prices)),
		undated: make(map[string]*ModelPrice),
	}
	sort.SliceStable(s.Prices, func(i, j int) bool { return s.Prices[i].Key < s.Prices[j].Key })
	var errs []error
	for _, mp := range s.Prices {
		if _, dup := s.exact[mp.Key]; dup {
			errs = append(errs, fmt.Errorf("model %s: listed twice", mp.Key))
			continue
		}
		// An entry already compiled (shared with an earlier snapshot by
		// Share) keeps its tables: live readers of the earlier snapshot
		// read them, and compiling is deterministic, so rebuilding would
		// only race with them. Entries are immutable once compiled.
		if mp.variants == nil {
			if err := mp.compile(); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		s.exact[mp.Key] = mp
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("build price snapshot: %w", err)
	}
	// Normalized names: several keys may normalize alike ("gpt-4.1",
	// "GPT-4.1"); the entry whose key already is the normal form wins,
	// otherwise the first key in sort order. Either way the choice does not
	// depend on map iteration order.
	for _, mp := range s.Prices {
		n := string(normalize(nil, mp.Key))
		if cur, ok := s.norm[n]; !ok || (mp.Key == n && cur.Key != n) {
			s.norm[n] = mp
		}
	}
	// Undated names: "claude-foo" → "claude-foo-20250101" when only dated
	// entries exist; the latest date wins (keys sort by date within a
	// prefix, so the last one visited).
	for _, mp := range s.Prices {
		n := normalize(nil, mp.Key)
		if base := stripDate(n); len(base) < len(n) {
			if _, listed := s.norm[string(base)]; !listed {
				s.undated[string(base)] = mp
			}
		}
	}
	return s, nil
}

// Err joins Rejected into one error, for callers that refuse partial lists.
func (s *Snapshot) Err() error {
	errs := make([]error, len(s.Rejected))
	for i, e := range s.Rejected {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// Get returns the entry with exactly this key.
func (s *Snapshot) Get(key string) *ModelPrice { return s.exact[key] }

// providerPrefixes maps provider names as events report them to the key
// prefixes price lists use, when they differ.
var providerPrefixes = map[string]string{
	"google":           "gemini",
	"google_ai_studio": "gemini",
	"google-ai-studio": "gemini",
	"vertex":           "vertex_ai",
	"google-vertex":    "vertex_ai",
	"aws":              "bedrock",
	"amazon-bedrock":   "bedrock",
	"azure_openai":     "azure",
	"azure-openai":     "azure",
	"together":         "together_ai",
	"fireworks":        "fireworks_ai",
	"x-ai":             "xai",
	"mistralai":        "mistral",
}

// Aliases maps model names (normalized: see normalize) to the name to
// resolve instead: deployment names ("prod-claude" → "claude-sonnet-4-5"),
// regional ids, or a house name for a model. Applied once, before any other
// rule; an alias target is not itself aliased.
type Aliases map[string]string

// NewAliases normalizes the keys of m so lookups need no allocation.
func NewAliases(m map[string]string) Aliases {
	a := make(Aliases, len(m))
	for k, v := range m {
		a[string(normalize(nil, k))] = v
	}
	return a
}

// Lookup resolves an event's provider and model to a price entry. It does
// not allocate for names up to 120 bytes. The order is fixed and the first
// hit wins:
//
//  1. The alias table (model normalized) replaces the model name.
//  2. Candidate names, in order: "provider/model" (provider as reported,
//     then its usual prefix, e.g. google → gemini), then "model", then, if
//     the model carries a prefix ("openai/gpt-4o"), the name after it.
//     Provider-qualified names come first because the same model often
//     costs differently per provider (azure/gpt-4o vs gpt-4o).
//  3. For each candidate: the key exactly, then the normalized key
//     (lowercase; a dot between digits becomes a dash, so
//     "claude-sonnet-4.5" matches "claude-sonnet-4-5").
//  4. Then, for each candidate, dated ↔ undated: the name with a trailing
//     date removed (-20250929, -2024-08-06, @20250929) against listed keys,
//     and an undated name against the latest dated key.
//
// A bare name may resolve to another provider's entry (an event from
// provider "bedrock" for "claude-sonnet-4-5" uses the anthropic entry when
// no bedrock entry matches); Rated.PriceKey records which entry was used.
func (s *Snapshot) Lookup(provider, model string, aliases Aliases) *ModelPrice {
	var nb [128]byte
	if len(aliases) > 0 {
		if target, ok := aliases[string(normalize(nb[:0], model))]; ok {
			model = target
		}
	}
	if mp := s.exact[model]; mp != nil && (provider == "" || provider == mp.Provider) {
		return mp // the common case: one map read
	}
	var cb [128]byte
	rest := ""
	if i := strings.IndexByte(model, '/'); i > 0 {
		rest = model[i+1:]
	}
	mapped := ""
	if provider != "" {
		mapped = providerPrefixes[provider]
	}
	for pass := 0; pass < 2; pass++ {
		if provider != "" {
			c := append(append(append(cb[:0], provider...), '/'), model...)
			if mp := s.try(c, nb[:0], pass); mp != nil {
				return mp
			}
			if mapped != "" {
				c = append(append(append(cb[:0], mapped...), '/'), model...)
				if mp := s.try(c, nb[:0], pass); mp != nil {
					return mp
				}
			}
		}
		if mp := s.try(append(cb[:0], model...), nb[:0], pass); mp != nil {
			return mp
		}
		if rest != "" {
			if mp := s.try(append(cb[:0], rest...), nb[:0], pass); mp != nil {
				return mp
			}
		}
	}
	return nil
}

// try looks name up: pass 0 exactly and normalized, pass 1 by date rules.
func (s *Snapshot) try(name, scratch []byte, pass int) *ModelPrice {
	if pass == 0 {
		if mp := s.exact[string(name)]; mp != nil {
			return mp
		}
		return s.norm[string(normalize(scratch, name))]
	}
	n := normalize(scratch, name)
	if base := stripDate(n); len(base) < len(n) {
		if mp := s.norm[string(base)]; mp != nil {
			return mp
		}
		if mp := s.undated[string(base)]; mp != nil {
			return mp
		}
	}
	return s.undated[string(n)]
}

// normalize appends the lookup form of name to dst: ASCII lowercase, and a
// '.' between two digits becomes '-' (OpenRouter's "claude-sonnet-4.5" is
// LiteLLM's "claude-sonnet-4-5"). Changing this changes which entry old
// events resolve to: treat it as a price change.
func normalize[S ~string | ~[]byte](dst []byte, name S) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '.' && i > 0 && i+1 < len(name) && isDigit(name[i-1]) && isDigit(name[i+1]):
			c = '-'
		}
		dst = append(dst, c)
	}
	return dst
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// stripDate returns n without a trailing release date: -YYYYMMDD,
// @YYYYMMDD or -YYYY-MM-DD (years 20xx, so "-0613"-style short ids and
// version numbers are left alone). It returns n unchanged otherwise.
func stripDate(n []byte) []byte {
	l := len(n)
	if l > 9 && (n[l-9] == '-' || n[l-9] == '@') && allDigits(n[l-8:]) && n[l-8] == '2' && n[l-7] == '0' {
		return n[:l-9]
	}
	if l > 11 && n[l-11] == '-' && n[l-10] == '2' && n[l-9] == '0' && allDigits(n[l-10:l-6]) &&
		n[l-6] == '-' && allDigits(n[l-5:l-3]) && n[l-3] == '-' && allDigits(n[l-2:]) {
		return n[:l-11]
	}
	return n
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return len(b) > 0
}
