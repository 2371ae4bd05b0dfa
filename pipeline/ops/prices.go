package ops

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// Prices is the live price state the dashboard shows; *prices.State
// implements it. Both methods must be safe for concurrent use and return
// values the caller only reads.
type Prices interface {
	Catalog() *prices.Catalog
	Global() *rating.MarkupRules
}

// PriceRow is one price-list entry as a customer joining now pays it:
// standard tier, below any long-context threshold, fallbacks applied (a
// cached-input price not listed is the input price). Prices are exact
// decimal strings in USD per 1M tokens; "" means no price (such usage is
// refused, never billed as zero).
type PriceRow struct {
	Model             string `json:"model"`
	Provider          string `json:"provider"`
	Mode              string `json:"mode,omitempty"`
	Input             string `json:"input"`
	Output            string `json:"output"`
	CachedInput       string `json:"cached_input"`
	Markup            string `json:"markup"`
	InputCharge       string `json:"input_charge"`
	OutputCharge      string `json:"output_charge"`
	CachedInputCharge string `json:"cached_input_charge"`
	Unpriced          string `json:"unpriced,omitempty"`
}

// ProviderCount is a provider and how many entries it has.
type ProviderCount struct {
	Name   string `json:"name"`
	Models int    `json:"models"`
}

// VersionRef names a price version.
type VersionRef struct {
	ID            string    `json:"id"`
	EffectiveFrom time.Time `json:"effective_from"`
	Models        int       `json:"models"`
}

// PricesView is what /v1/prices returns.
type PricesView struct {
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// At is when these prices are in force (the request's time).
	At      time.Time  `json:"at"`
	Version VersionRef `json:"version"`
	// Markup is the default markup and where it comes from; a row's own
	// Markup can differ (per-provider or per-model rules of the card).
	Markup     string          `json:"markup"`
	MarkupFrom string          `json:"markup_from"`
	Providers  []ProviderCount `json:"providers"`
	Total      int             `json:"total"`   // entries in the version
	Matched    int             `json:"matched"` // entries matching the filters
	Models     []PriceRow      `json:"models"`
}

// priceCache keeps the last computed table: it changes only when the
// catalog, the version in force or the card version changes.
type priceCache struct {
	mu   sync.Mutex
	key  [3]any
	view *PricesView
}

// currentTerms is what a customer joining now gets: the default card's
// version in force (its markup layer and pinned price version), else the
// global markup and the version in force.
func currentTerms(cat *prices.Catalog, global *rating.MarkupRules, now time.Time) (*rating.Version, rating.MarkupLayers, string, *rating.CardVersion) {
	layers := rating.MarkupLayers{Global: global}
	from := "prices.markup (no rate card)"
	var cv *rating.CardVersion
	if c := cat.Cards[cat.DefaultCard]; c != nil && len(c.Versions) > 0 {
		cv = &c.Versions[0]
		for i := range c.Versions {
			if !c.Versions[i].EffectiveFrom.After(now) {
				cv = &c.Versions[i]
			}
		}
		layers.Card = &cv.Markups
		from = "rate card " + c.ID + " version " + strconv.Itoa(cv.Version)
		if !cv.Markups.Default.IsSet() {
			from += ", over prices.markup"
		}
	}
	v := cat.Book.VersionAt(now)
	if cv != nil && cv.PriceVersion != "" {
		if pv := cat.Book.Version(cv.PriceVersion); pv != nil {
			v = pv
		}
	}
	return v, layers, from, cv
}

func (s *Server) pricesView() *PricesView {
	if s.deps.Prices == nil {
		return &PricesView{Reason: "this process has no price state"}
	}
	now := s.deps.Now()
	cat := s.deps.Prices.Catalog()
	v, layers, from, cv := currentTerms(cat, s.deps.Prices.Global(), now)
	if v == nil {
		return &PricesView{Reason: "no price version is in force yet: run tariff setup or tariff prices sync", At: now.UTC()}
	}
	key := [3]any{cat, v, cv}
	s.prices.mu.Lock()
	defer s.prices.mu.Unlock()
	if s.prices.view != nil && s.prices.key == key {
		return s.prices.view
	}
	def := layers.Resolve("", "")
	pv := &PricesView{
		Available: true, At: now.UTC(),
		Version: VersionRef{ID: v.ID, EffectiveFrom: v.EffectiveFrom.UTC(), Models: len(v.Prices.Prices)},
		Markup:  def.String(), MarkupFrom: from, Total: len(v.Prices.Prices),
		Models: make([]PriceRow, 0, len(v.Prices.Prices)),
	}
	counts := map[string]int{}
	for _, mp := range v.Prices.Prices {
		counts[mp.Provider]++
		pv.Models = append(pv.Models, priceRow(mp, layers.Resolve(mp.Provider, mp.Key)))
	}
	for p, n := range counts {
		pv.Providers = append(pv.Providers, ProviderCount{p, n})
	}
	sort.Slice(pv.Providers, func(i, j int) bool { return pv.Providers[i].Name < pv.Providers[j].Name })
	s.prices.key, s.prices.view = key, pv
	return pv
}

var tableUnits = [3]schemas.Unit{schemas.UnitInput, schemas.UnitOutput, schemas.UnitCachedInput}

func priceRow(mp *rating.ModelPrice, m rating.Markup) PriceRow {
	r := PriceRow{Model: mp.Key, Provider: mp.Provider, Mode: mp.Mode, Markup: m.String(), Unpriced: mp.Unpriced}
	if mp.Unpriced != "" {
		return r
	}
	p, ok := mp.Table(0, 0, schemas.TierStandard)
	var plain, charged [3]string
	for i, u := range tableUnits {
		if !ok[u] {
			continue
		}
		per := prices.PerMillion(p[u])
		plain[i], charged[i] = per.String(), per.Mul(m.Multiplier()).String()
	}
	r.Input, r.Output, r.CachedInput = plain[0], plain[1], plain[2]
	r.InputCharge, r.OutputCharge, r.CachedInputCharge = charged[0], charged[1], charged[2]
	return r
}

// apiPrices serves the prices in force. Filters: provider (exact), q
// (substring of the model, case-insensitive), limit (0: all).
func (s *Server) apiPrices(w http.ResponseWriter, r *http.Request) {
	all := s.pricesView()
	q := r.URL.Query()
	provider, match := q.Get("provider"), strings.ToLower(q.Get("q"))
	limit, err := strconv.Atoi(q.Get("limit"))
	if q.Get("limit") != "" && (err != nil || limit < 0) {
		writeError(w, http.StatusBadRequest, "limit: "+strconv.Quote(q.Get("limit"))+": expected a count, 0 for all")
		return
	}
	out := *all
	out.Models = make([]PriceRow, 0, min(len(all.Models), max(limit, 64)))
	for _, row := range all.Models {
		if provider != "" && row.Provider != provider {
			continue
		}
		if match != "" && !strings.Contains(strings.ToLower(row.Model), match) {
			continue
		}
		out.Matched++
		if limit == 0 || len(out.Models) < limit {
			out.Models = append(out.Models, row)
		}
	}
	if out.Providers == nil {
		out.Providers = []ProviderCount{}
	}
	writeJSON(w, http.StatusOK, &out)
}

// --- price changes ---

// PriceChange is one price that changed between two versions. Token
// prices are per 1M tokens, other units per unit (Per says which).
type PriceChange struct {
	Kind      string `json:"kind"` // price_up, price_down, price_added, price_removed
	Model     string `json:"model"`
	Provider  string `json:"provider"`
	Unit      string `json:"unit"`
	Tier      string `json:"tier"`
	Condition string `json:"condition,omitempty"`
	Per       string `json:"per"`
	Old       string `json:"old"`
	New       string `json:"new"`
	// ChangePercent is (new - old) / old in percent, two decimals; "" when
	// a side is missing or old is 0.
	ChangePercent string `json:"change_percent"`
	relative      decimal.Decimal
}

// Rollout says who a price version applies to, per rate card.
type Rollout struct {
	Card          string    `json:"card"`
	CardVersion   int       `json:"card_version"`
	Policy        string    `json:"policy"` // all-customers or new-customers-only
	EffectiveFrom time.Time `json:"effective_from"`
	// Pinned: the card version pins this price version (new customers
	// only: earlier customers keep the prices of their card version).
	Pinned    bool   `json:"pinned"`
	AppliesTo string `json:"applies_to"`
}

// VersionChanges is one recorded price version and what it changed.
type VersionChanges struct {
	ID            string         `json:"id"`
	PreviousID    string         `json:"previous_id,omitempty"`
	EffectiveFrom time.Time      `json:"effective_from"`
	InForce       bool           `json:"in_force"` // the version in force now
	Models        int            `json:"models"`
	Summary       prices.Summary `json:"summary"`
	Rollout       []Rollout      `json:"rollout"`
	Changes       []PriceChange  `json:"changes"`
	ModelsAdded   []string       `json:"models_added"`
	ModelsRemoved []string       `json:"models_removed"`
	Truncated     map[string]int `json:"truncated,omitempty"` // list -> entries left out
}

// maxListed bounds each list of one version in the response.
const maxListed = 500

func (s *Server) apiPriceChanges(w http.ResponseWriter, r *http.Request) {
	limit := 10
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "limit: "+strconv.Quote(l)+": expected 1..100")
			return
		}
		limit = n
	}
	if s.deps.Prices == nil {
		writeJSON(w, http.StatusOK, map[string]any{"available": false, "reason": "this process has no price state", "versions": []any{}})
		return
	}
	cat := s.deps.Prices.Catalog()
	vs := cat.Book.Versions()
	now := s.deps.Now()
	inForce := cat.Book.VersionAt(now)
	out := make([]*VersionChanges, 0, min(limit, len(vs)))
	for i := len(vs) - 1; i >= 0 && len(out) < limit; i-- {
		var prev *rating.Version
		if i > 0 {
			prev = vs[i-1]
		}
		vc := s.versionChanges(prev, vs[i])
		c := *vc
		c.InForce = vs[i] == inForce
		c.Rollout = rollouts(cat, vs[i])
		out = append(out, &c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"available": true, "total_versions": len(vs), "versions": out})
}

func (s *Server) versionChanges(prev, v *rating.Version) *VersionChanges {
	key := v.ID
	if prev != nil {
		key = prev.ID + "\x00" + v.ID
	}
	if c, ok := s.diffs.Load(key); ok {
		return c.(*VersionChanges)
	}
	vc := &VersionChanges{ID: v.ID, EffectiveFrom: v.EffectiveFrom.UTC(), Models: len(v.Prices.Prices),
		Changes: []PriceChange{}, ModelsAdded: []string{}, ModelsRemoved: []string{}}
	if prev != nil {
		vc.PreviousID = prev.ID
		changes := rating.Diff(prev.Prices, v.Prices)
		vc.Summary = prices.Summarize(changes)
		for i := range changes {
			c := &changes[i]
			switch c.Kind {
			case rating.ChangeModelAdded:
				vc.ModelsAdded = appendCapped(vc, "models_added", vc.ModelsAdded, c.Model)
				continue
			case rating.ChangeModelRemoved:
				vc.ModelsRemoved = appendCapped(vc, "models_removed", vc.ModelsRemoved, c.Model)
				continue
			}
			if len(vc.Changes) >= maxListed {
				vc.truncate("changes")
				continue
			}
			vc.Changes = append(vc.Changes, priceChange(prev, v, c))
		}
		// Rises and cuts first, the largest first; then prices added and
		// removed, in model order (Diff's).
		sort.SliceStable(vc.Changes, func(i, j int) bool {
			a, b := &vc.Changes[i], &vc.Changes[j]
			if ra, rb := changeRank(a), changeRank(b); ra != rb {
				return ra < rb
			}
			return a.relative.Abs().GreaterThan(b.relative.Abs())
		})
	}
	s.diffs.Store(key, vc)
	return vc
}

func (vc *VersionChanges) truncate(list string) {
	if vc.Truncated == nil {
		vc.Truncated = map[string]int{}
	}
	vc.Truncated[list]++
}

func appendCapped(vc *VersionChanges, list string, l []string, s string) []string {
	if len(l) >= maxListed {
		vc.truncate(list)
		return l
	}
	return append(l, s)
}

func changeRank(c *PriceChange) int {
	switch c.Kind {
	case "price_up", "price_down":
		return 0
	case "price_added":
		return 1
	}
	return 2
}

func priceChange(prev, v *rating.Version, c *rating.Change) PriceChange {
	pc := PriceChange{Kind: c.Kind.String(), Model: c.Model, Unit: c.UnitName, Tier: c.TierName, Per: "unit", relative: c.Relative}
	if c.Condition != "always" {
		pc.Condition = c.Condition
	}
	if mp := v.Prices.Get(c.Model); mp != nil {
		pc.Provider = mp.Provider
	} else if mp := prev.Prices.Get(c.Model); mp != nil {
		pc.Provider = mp.Provider
	}
	show := func(p *rating.Price) string {
		if p == nil {
			return ""
		}
		if prices.IsTokenUnit(c.Unit) {
			return prices.PerMillion(*p).String()
		}
		return p.Decimal().String()
	}
	if prices.IsTokenUnit(c.Unit) {
		pc.Per = "1M tokens"
	}
	pc.Old, pc.New = show(c.Old), show(c.New)
	if c.Old != nil && c.New != nil && !c.Old.IsZero() {
		pc.ChangePercent = c.Relative.Mul(decimal.NewFromInt(100)).Round(2).String()
	}
	return pc
}

// rollouts says, per rate card, who is rated with price version v: the
// card version in force when v took effect follows the price book (all of
// the card's customers from v's effective time), or a card version pinned
// to v gives it to customers who join from that card version on.
func rollouts(cat *prices.Catalog, v *rating.Version) []Rollout {
	ids := make([]string, 0, len(cat.Cards))
	for id := range cat.Cards {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := []Rollout{}
	for _, id := range ids {
		c := cat.Cards[id]
		var atEff *rating.CardVersion
		for i := range c.Versions {
			cv := &c.Versions[i]
			if cv.PriceVersion == v.ID {
				out = append(out, Rollout{Card: id, CardVersion: cv.Version, Policy: prices.RolloutName(cv.Rollout),
					EffectiveFrom: cv.EffectiveFrom.UTC(), Pinned: true,
					AppliesTo: "customers who join card " + id + " from its version " + strconv.Itoa(cv.Version) + " on; earlier customers keep the prices of their version"})
			}
			if !cv.EffectiveFrom.After(v.EffectiveFrom) {
				atEff = cv
			}
		}
		if atEff != nil && atEff.PriceVersion == "" {
			out = append(out, Rollout{Card: id, CardVersion: atEff.Version, Policy: prices.RolloutName(atEff.Rollout),
				EffectiveFrom: v.EffectiveFrom.UTC(),
				AppliesTo:     "every customer on card " + id + " (version " + strconv.Itoa(atEff.Version) + " follows the price book), for usage from the version's effective time"})
		}
	}
	if len(out) == 0 {
		out = append(out, Rollout{Policy: prices.RolloutName(rating.RolloutAllCustomers), EffectiveFrom: v.EffectiveFrom.UTC(),
			AppliesTo: "every customer (no rate card: global markup), for usage from the version's effective time"})
	}
	return out
}
