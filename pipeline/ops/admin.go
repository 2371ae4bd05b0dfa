package ops

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// The admin API (/v1/...) changes and reads customers' balances, plans,
// rate cards and markup. Every call needs the admin token (see
// Server.admin); the OpenAPI description is pipeline/ops/openapi.yaml,
// served at /v1/openapi.yaml.
//
// Balance changes are not applied here: each becomes a balance.Command
// published to the command topic, keyed by customer id, so that it is
// ordered with the customer's usage, applied exactly once by the partition
// that owns the customer, and replayable. A call answers 202 once the
// broker has the command durably (acknowledged by every in-sync replica);
// the balance stage applies it within a batch. A command the stage
// refuses when it applies it (voiding a grant that does not exist, say)
// goes to the dead-letter topic with the reason.
//
// Retrying a call is safe when it carries an Idempotency-Key header: the
// key is the command id, and a command id applied before is a no-op.
// Without one, each call is a new command.

// Commands publishes admin commands to the command topic.
type Commands interface {
	// Submit publishes c and returns once the broker has it durably.
	Submit(ctx context.Context, c *balance.Command) error
	// SubmitAssignment publishes a rate-card assignment and returns once
	// the broker has it durably.
	SubmitAssignment(ctx context.Context, c *pipeline.AssignRateCard) error
	// Topic names the command topic (for the answer).
	Topic() string
}

// Accounts reads committed accounts (the balance stage's state).
type Accounts interface {
	// Account returns the customer's committed account and its closed
	// periods (oldest first); ok is false when this instance holds no
	// account for the customer (never seen, or owned by another
	// instance's partitions).
	Account(customer string) (acct *balance.Account, periods []balance.PeriodUsage, ok bool, err error)
}

// RateCards reads and changes rate cards (prices.State). Customers'
// assignments are partition state: they change through the command topic.
type RateCards interface {
	Catalog() *prices.Catalog
	SetCard(id string, markups rating.MarkupRules, rollout rating.Rollout, eff time.Time) (prices.CardChange, error)
}

// Deliveries lists the latest webhook delivery attempts.
type Deliveries interface {
	Recent(limit int) any
}

// maxBody bounds a request body: a plan with every bound at its maximum
// is far below it.
const maxBody = 1 << 20

// decodeBody reads a JSON body into v, refusing unknown fields (a typing
// mistake must not be silently ignored in a billing change) and trailing
// data. The error names what was wrong.
func decodeBody(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("Content-Type %q: expected application/json", ct)
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("body: expected a JSON object, got nothing")
		}
		return fmt.Errorf("body: %w", err)
	}
	if dec.More() {
		return errors.New("body: expected one JSON object, got more data after it")
	}
	return nil
}

// customerID reads and checks the {id} path value.
func customerID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > schemas.MaxIDLen {
		return "", fmt.Errorf("customer id %q: expected 1 to %d bytes", id, schemas.MaxIDLen)
	}
	return id, nil
}

// commandID is the Idempotency-Key header, or a new random id.
func commandID(r *http.Request) (string, error) {
	if k := strings.TrimSpace(r.Header.Get("Idempotency-Key")); k != "" {
		if len(k) > schemas.MaxIDLen {
			return "", fmt.Errorf("Idempotency-Key: %d bytes: expected at most %d", len(k), schemas.MaxIDLen)
		}
		return k, nil
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "cmd_" + hex.EncodeToString(b[:]), nil
}

// CommandAccepted is the answer to a balance change.
type CommandAccepted struct {
	Status     string `json:"status"` // "accepted"
	CommandID  string `json:"command_id"`
	Kind       string `json:"kind"`
	CustomerID string `json:"customer_id"`
	Topic      string `json:"topic"`
	// GrantID is the id of the grant a grant command adds or voids.
	GrantID string `json:"grant_id,omitempty"`
}

// submit validates c and publishes it.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, c *balance.Command) {
	if s.deps.Commands == nil {
		writeError(w, http.StatusServiceUnavailable, "balance changes: no command topic is configured (a kafka.topics entry with format \"command\")")
		return
	}
	c.At = s.deps.Now().UTC()
	if err := c.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.deps.Commands.Submit(ctx, c); err != nil {
		s.log.Warn().Err(err).Str("customer", c.CustomerID).Str("command", c.ID).Msg("publish admin command failed")
		writeError(w, http.StatusServiceUnavailable, "the command was not stored: "+err.Error()+"; retry with the same Idempotency-Key")
		return
	}
	s.log.Info().Str("customer", c.CustomerID).Str("command", c.ID).Stringer("kind", c.Kind).Msg("admin command accepted")
	a := CommandAccepted{Status: "accepted", CommandID: c.ID, Kind: c.Kind.String(), CustomerID: c.CustomerID, Topic: s.deps.Commands.Topic()}
	switch {
	case c.Grant != nil:
		a.GrantID = c.Grant.ID
	case c.GrantID != "":
		a.GrantID = c.GrantID
	}
	writeJSON(w, http.StatusAccepted, a)
}

// newCommand starts a command for the request's customer; it writes the
// error answer and returns nil when the path or the key is bad.
func newCommand(w http.ResponseWriter, r *http.Request, kind balance.CommandKind) *balance.Command {
	id, err := customerID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil
	}
	cid, err := commandID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil
	}
	return &balance.Command{ID: cid, CustomerID: id, Kind: kind}
}

// postGrant adds a credit pack or a top-up: POST /v1/customers/{id}/grants
// with a balance.Grant; the grant id defaults to the command id.
func (s *Server) postGrant(w http.ResponseWriter, r *http.Request) {
	c := newCommand(w, r, balance.CommandGrant)
	if c == nil {
		return
	}
	var g balance.Grant
	if err := decodeBody(r, &g); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if g.ID == "" {
		g.ID = c.ID
	}
	c.Grant = &g
	s.submit(w, r, c)
}

// deleteGrant voids what is left of a grant.
func (s *Server) deleteGrant(w http.ResponseWriter, r *http.Request) {
	c := newCommand(w, r, balance.CommandVoidGrant)
	if c == nil {
		return
	}
	c.GrantID = r.PathValue("grant")
	s.submit(w, r, c)
}

// PlanChange is the body of PUT /v1/customers/{id}/plan: a plan from the
// configured catalog by PlanID, or a whole Plan.
type PlanChange struct {
	PlanID      string        `json:"plan_id,omitempty"`
	Plan        *balance.Plan `json:"plan,omitempty"`
	EffectiveAt time.Time     `json:"effective_at,omitzero"`
	Anchor      time.Time     `json:"anchor,omitzero"`
}

func (s *Server) putPlan(w http.ResponseWriter, r *http.Request) {
	c := newCommand(w, r, balance.CommandChangePlan)
	if c == nil {
		return
	}
	var pc PlanChange
	if err := decodeBody(r, &pc); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case pc.PlanID != "" && pc.Plan != nil:
		writeError(w, http.StatusBadRequest, "plan_id and plan: expected one of them, not both")
		return
	case pc.PlanID != "":
		i := slices.IndexFunc(s.deps.Plans, func(p balance.Plan) bool { return p.ID == pc.PlanID })
		if i < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("plan_id %q: expected one of the configured plans (%s)", pc.PlanID, strings.Join(s.planIDs(), ", ")))
			return
		}
		p := s.deps.Plans[i]
		c.Plan = &p
	case pc.Plan != nil:
		c.Plan = pc.Plan
	default:
		writeError(w, http.StatusBadRequest, "plan_id or plan: expected one of them")
		return
	}
	c.EffectiveAt, c.Anchor = pc.EffectiveAt, pc.Anchor
	s.submit(w, r, c)
}

func (s *Server) planIDs() []string {
	ids := make([]string, len(s.deps.Plans))
	for i := range s.deps.Plans {
		ids[i] = s.deps.Plans[i].ID
	}
	if len(ids) == 0 {
		return []string{"none configured: see balances.plans"}
	}
	return ids
}

// ThresholdsChange is the body of PUT /v1/customers/{id}/thresholds; null
// thresholds return to the plan's.
type ThresholdsChange struct {
	Thresholds []balance.Threshold `json:"thresholds"`
}

func (s *Server) putThresholds(w http.ResponseWriter, r *http.Request) {
	c := newCommand(w, r, balance.CommandSetThresholds)
	if c == nil {
		return
	}
	var tc ThresholdsChange
	if err := decodeBody(r, &tc); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c.Thresholds = tc.Thresholds
	s.submit(w, r, c)
}

// PauseChange is the body of PUT /v1/customers/{id}/pause.
type PauseChange struct {
	Pause string `json:"pause"` // auto, pause or resume
}

func (s *Server) putPause(w http.ResponseWriter, r *http.Request) {
	c := newCommand(w, r, balance.CommandSetPause)
	if c == nil {
		return
	}
	var pc PauseChange
	if err := decodeBody(r, &pc); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := c.Pause.UnmarshalText([]byte(pc.Pause)); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("pause: %q: expected auto, pause or resume", pc.Pause))
		return
	}
	s.submit(w, r, c)
}

// AccountView is the answer of GET /v1/customers/{id}: the committed
// account. Money is exact decimal strings.
type AccountView struct {
	CustomerID    string              `json:"customer_id"`
	Plan          balance.Plan        `json:"plan"`
	PeriodStart   time.Time           `json:"period_start"`
	PeriodEnd     time.Time           `json:"period_end"`
	Clock         time.Time           `json:"clock"` // how far the account has advanced
	Entitlement   EntitlementView     `json:"entitlement"`
	CurrentPeriod balance.PeriodUsage `json:"current_period"`
	// ClosedPeriods are the start times of the stored closed periods,
	// oldest first (statements can be asked for each).
	ClosedPeriods []time.Time `json:"closed_periods"`
}

func (s *Server) account(w http.ResponseWriter, r *http.Request) (string, *balance.Account, []balance.PeriodUsage, bool) {
	id, err := customerID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", nil, nil, false
	}
	if s.deps.Accounts == nil {
		writeError(w, http.StatusServiceUnavailable, "accounts: the balance stage does not run in this process")
		return "", nil, nil, false
	}
	a, periods, ok, err := s.deps.Accounts.Account(id)
	if err != nil {
		s.log.Error().Err(err).Str("customer", id).Msg("read account")
		writeError(w, http.StatusInternalServerError, "read account: "+err.Error())
		return "", nil, nil, false
	}
	if !ok {
		// Another instance may own the customer's partition: forward.go.
		if !s.forward(w, r, id, forwardReadTimeout) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("customer %q: no account on this instance (never seen, or its partition is owned by another instance)", id))
		}
		return "", nil, nil, false
	}
	s.markServed(w)
	return id, a, periods, true
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) {
	id, a, periods, ok := s.account(w, r)
	if !ok {
		return
	}
	start, end := a.Period()
	e := a.Entitlement(s.deps.Now())
	v := AccountView{
		CustomerID: id, Plan: a.Plan(), PeriodStart: start, PeriodEnd: end, Clock: a.Clock(),
		Entitlement: EntitlementView{CustomerID: id, Known: true, Allowed: e.Allowed, Reason: e.Reason.String(), Remaining: e.Remaining.String(),
			TokensRemaining: e.TokensRemaining, OverageAllowed: e.OverageAllowed, Paused: e.Paused},
		CurrentPeriod: a.CurrentPeriod(),
		ClosedPeriods: make([]time.Time, 0, len(periods)),
	}
	for i := range periods {
		v.ClosedPeriods = append(v.ClosedPeriods, periods[i].Start)
	}
	writeJSON(w, http.StatusOK, v)
}

// StatementsView is the answer of GET /v1/customers/{id}/statement.
type StatementsView struct {
	CustomerID string `json:"customer_id"`
	Period     string `json:"period"`
	// Statements are the billing periods selected, oldest first: one per
	// period, so a month with a plan change that re-anchored the cycle
	// has two. Open is true for the period still running (its amounts
	// can still grow).
	Statements []StatementView `json:"statements"`
}

// StatementView is one period as presented, rounded once
// (balance.BuildStatement), with the exact usage charge beside it for
// reconciliation with ClickHouse.
type StatementView struct {
	balance.Statement
	Open             bool   `json:"open"`
	Events           int64  `json:"events"`
	ExactUsageCharge string `json:"exact_usage_charge"`
	ExactLateCharge  string `json:"exact_late_charge"`
}

// SelectPeriods picks the periods a statement query names: "current",
// "last" (the latest closed one), "all", a month "2026-11" (every period
// that starts in that UTC month), or a period's start time (RFC 3339).
func SelectPeriods(period string, closed []balance.PeriodUsage, current balance.PeriodUsage) ([]balance.PeriodUsage, bool, error) {
	all := append(slices.Clip(closed), current)
	switch period {
	case "", "current":
		return all[len(all)-1:], true, nil
	case "last":
		if len(closed) == 0 {
			return nil, false, nil
		}
		return closed[len(closed)-1:], false, nil
	case "all":
		return all, true, nil
	}
	if m, err := time.Parse("2006-01", period); err == nil {
		var out []balance.PeriodUsage
		for _, p := range all {
			if y, mo, _ := p.Start.UTC().Date(); y == m.Year() && mo == m.Month() {
				out = append(out, p)
			}
		}
		return out, len(out) > 0 && out[len(out)-1].Start.Equal(current.Start), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, period); err == nil {
		for i, p := range all {
			if p.Start.Equal(t) {
				return all[i : i+1], i == len(all)-1, nil
			}
		}
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("period %q: expected current, last, all, a month such as 2026-11, or a period's start time (RFC 3339)", period)
}

func (s *Server) getStatement(w http.ResponseWriter, r *http.Request) {
	period := r.URL.Query().Get("period")
	if _, _, err := SelectPeriods(period, nil, balance.PeriodUsage{}); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, a, closed, ok := s.account(w, r)
	if !ok {
		return
	}
	current := a.CurrentPeriod()
	sel, lastOpen, _ := SelectPeriods(period, closed, current)
	if len(sel) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("customer %q: no stored billing period matches %q", id, period))
		return
	}
	if period == "" {
		period = "current"
	}
	v := StatementsView{CustomerID: id, Period: period}
	for i := range sel {
		st := balance.BuildStatement(&sel[i], balance.DefaultRounding)
		v.Statements = append(v.Statements, StatementView{Statement: st, Open: lastOpen && i == len(sel)-1,
			Events: sel[i].Events, ExactUsageCharge: sel[i].UsageCharge.String(), ExactLateCharge: sel[i].LateCharge.String()})
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) getPlans(w http.ResponseWriter, r *http.Request) {
	plans := s.deps.Plans
	if plans == nil {
		plans = []balance.Plan{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"plans": plans})
}

// RateCardView is one rate card: its versions, oldest first.
type RateCardView struct {
	ID       string            `json:"id"`
	Default  bool              `json:"default"`
	Versions []CardVersionView `json:"versions"`
}

// CardVersionView is one version of a rate card; markups are percentages.
type CardVersionView struct {
	Version       int               `json:"version"`
	EffectiveFrom time.Time         `json:"effective_from"`
	Rollout       string            `json:"rollout"`
	PriceVersion  string            `json:"price_version,omitempty"`
	Markup        string            `json:"markup"`
	ByProvider    map[string]string `json:"by_provider,omitempty"`
	ByModel       map[string]string `json:"by_model,omitempty"`
}

func markupPercents(m map[string]rating.Markup) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v.Percent().String()
	}
	return out
}

func (s *Server) getRateCards(w http.ResponseWriter, r *http.Request) {
	if s.deps.RateCards == nil {
		writeError(w, http.StatusServiceUnavailable, "rate cards: the price state is not loaded in this process")
		return
	}
	cat := s.deps.RateCards.Catalog()
	out := []RateCardView{}
	for _, c := range cat.Cards {
		v := RateCardView{ID: c.ID, Default: c.ID == cat.DefaultCard}
		for _, cv := range c.Versions {
			v.Versions = append(v.Versions, CardVersionView{Version: cv.Version, EffectiveFrom: cv.EffectiveFrom,
				Rollout: prices.RolloutName(cv.Rollout), PriceVersion: cv.PriceVersion, Markup: cv.Markups.Default.Percent().String(),
				ByProvider: markupPercents(cv.Markups.ByProvider), ByModel: markupPercents(cv.Markups.ByModel)})
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b RateCardView) int { return strings.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, map[string]any{"rate_cards": out})
}

// RateCardChange is the body of PUT /v1/rate-cards/{id}: the terms of a
// new card version. Markups are percentages over provider cost ("30",
// "30%", "12.5"); the most specific (model, then provider, then markup)
// applies.
type RateCardChange struct {
	Markup     string            `json:"markup"`
	ByProvider map[string]string `json:"by_provider,omitempty"`
	ByModel    map[string]string `json:"by_model,omitempty"`
	// Rollout: all-customers (default) or new-customers-only.
	Rollout     string    `json:"rollout,omitempty"`
	EffectiveAt time.Time `json:"effective_at,omitzero"` // default now
}

// ParseMarkupPercent reads a markup percentage such as "30", "30%" or
// "12.5".
func ParseMarkupPercent(field, s string) (rating.Markup, error) {
	m, err := rating.ParseMarkup(strings.TrimSpace(s))
	if err != nil {
		return rating.Markup{}, fmt.Errorf("%s: %q: expected a percentage such as 30 or 12.5%%: %v", field, s, err)
	}
	return m, nil
}

func (s *Server) putRateCard(w http.ResponseWriter, r *http.Request) {
	if s.deps.RateCards == nil {
		writeError(w, http.StatusServiceUnavailable, "rate cards: the price state is not loaded in this process")
		return
	}
	var rc RateCardChange
	if err := decodeBody(r, &rc); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ch, err := s.setCard(r.PathValue("id"), rc)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, cardChangeView(ch))
}

// CardChangeView says what a rate-card change did.
type CardChangeView struct {
	CardID       string `json:"card_id"`
	Version      int    `json:"version"`
	Result       string `json:"result"` // created, added, kept
	PriceVersion string `json:"price_version,omitempty"`
}

func cardChangeView(ch prices.CardChange) CardChangeView {
	v := CardChangeView{CardID: ch.CardID, Version: ch.Version, Result: "kept", PriceVersion: ch.PriceVersion}
	switch {
	case ch.Created:
		v.Result = "created"
	case ch.Added:
		v.Result = "added"
	}
	return v
}

func (s *Server) setCard(id string, rc RateCardChange) (prices.CardChange, error) {
	var errs []error
	var rules rating.MarkupRules
	var err error
	if rules.Default, err = ParseMarkupPercent("markup", rc.Markup); err != nil {
		errs = append(errs, err)
	}
	parseMap := func(field string, in map[string]string) map[string]rating.Markup {
		if len(in) == 0 {
			return nil
		}
		out := make(map[string]rating.Markup, len(in))
		for k, v := range in {
			m, err := ParseMarkupPercent(field+"."+k, v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out[k] = m
		}
		return out
	}
	rules.ByProvider = parseMap("by_provider", rc.ByProvider)
	rules.ByModel = parseMap("by_model", rc.ByModel)
	rollout := rating.RolloutAllCustomers
	if rc.Rollout != "" {
		if rollout, err = prices.ParseRollout(rc.Rollout); err != nil {
			errs = append(errs, fmt.Errorf("rollout: %w", err))
		}
	}
	eff := rc.EffectiveAt
	if eff.IsZero() {
		eff = s.deps.Now().UTC().Truncate(time.Second)
	}
	if err := errors.Join(errs...); err != nil {
		return prices.CardChange{}, err
	}
	return s.deps.RateCards.SetCard(id, rules, rollout, eff)
}

// RateCardAssignment is the body of PUT /v1/customers/{id}/rate-card.
type RateCardAssignment struct {
	RateCardID string `json:"rate_card_id"`
	// Version is the card version; 0: the card's latest.
	Version int `json:"version,omitempty"`
	// EffectiveAt is when the assignment takes effect for rating (usage
	// timed from then on); default now. Usage already rated is never
	// rewritten.
	EffectiveAt time.Time `json:"effective_at,omitzero"`
}

// putRateCardAssignment moves a customer to a rate card version. The
// assignment is the state of the partition that owns the customer, so it
// travels as an assign_rate_card command on the command topic, applied in
// order with the customer's usage, once per command id (the
// Idempotency-Key); it answers 202 once the broker has it. The card and
// version are checked here against this instance's catalog, and again
// when the command is applied (a refusal then goes to the dead-letter
// topic).
func (s *Server) putRateCardAssignment(w http.ResponseWriter, r *http.Request) {
	id, err := customerID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.deps.RateCards == nil {
		writeError(w, http.StatusServiceUnavailable, "rate cards: the price state is not loaded in this process")
		return
	}
	cmdID, err := commandID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var ra RateCardAssignment
	if err := decodeBody(r, &ra); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	card := s.deps.RateCards.Catalog().Cards[ra.RateCardID]
	if card == nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("rate_card_id %q: no such rate card (GET /v1/rate-cards lists them)", ra.RateCardID))
		return
	}
	last := card.Versions[len(card.Versions)-1].Version
	if ra.Version == 0 {
		ra.Version = last
	}
	if ra.Version < 1 || ra.Version > last {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("version %d: expected 1 to %d (the versions of rate card %s), or 0 for the latest", ra.Version, last, card.ID))
		return
	}
	if s.deps.Commands == nil {
		writeError(w, http.StatusServiceUnavailable, "rate-card assignments: no command topic is configured (a kafka.topics entry with format \"command\")")
		return
	}
	now := s.deps.Now().UTC()
	if ra.EffectiveAt.IsZero() {
		ra.EffectiveAt = now
	}
	c := &pipeline.AssignRateCard{Kind: pipeline.AssignRateCardKind, ID: cmdID, CustomerID: id, At: now,
		RateCardID: card.ID, Version: ra.Version, EffectiveAt: ra.EffectiveAt.UTC()}
	if err := c.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.deps.Commands.SubmitAssignment(ctx, c); err != nil {
		s.log.Warn().Err(err).Str("customer", id).Str("command", c.ID).Msg("publish rate-card assignment failed")
		writeError(w, http.StatusServiceUnavailable, "the command was not stored: "+err.Error()+"; retry with the same Idempotency-Key")
		return
	}
	s.log.Info().Str("customer", id).Str("command", c.ID).Str("card", c.RateCardID).Int("version", c.Version).Msg("rate-card assignment accepted")
	writeJSON(w, http.StatusAccepted, CommandAccepted{Status: "accepted", CommandID: c.ID, Kind: c.Kind, CustomerID: id, Topic: s.deps.Commands.Topic()})
}

// SetupRequest is the body of POST /v1/setup: the admin-API form of
// `tariff setup` for a running tariff, whose topics, tables and price
// versions already exist.
type SetupRequest struct {
	Markup  string `json:"markup"`
	Rollout string `json:"rollout,omitempty"`
	CardID  string `json:"rate_card_id,omitempty"` // default "default"
}

// SetupResult says what setup found and did.
type SetupResult struct {
	RateCard      CardChangeView `json:"rate_card"`
	DefaultCard   string         `json:"default_rate_card"`
	PriceVersions int            `json:"price_versions"`
	LatestPrices  string         `json:"latest_price_version,omitempty"`
}

func (s *Server) postSetup(w http.ResponseWriter, r *http.Request) {
	if s.deps.RateCards == nil {
		writeError(w, http.StatusServiceUnavailable, "setup: the price state is not loaded in this process")
		return
	}
	var req SetupRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.CardID == "" {
		req.CardID = "default"
	}
	cat := s.deps.RateCards.Catalog()
	vs := cat.Book.Versions()
	if len(vs) == 0 {
		writeError(w, http.StatusConflict, "setup: no price version is recorded; run `tariff prices sync` or `tariff setup` first")
		return
	}
	ch, err := s.setCard(req.CardID, RateCardChange{Markup: req.Markup, Rollout: req.Rollout})
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cat = s.deps.RateCards.Catalog()
	writeJSON(w, http.StatusOK, SetupResult{RateCard: cardChangeView(ch), DefaultCard: cat.DefaultCard,
		PriceVersions: len(vs), LatestPrices: vs[len(vs)-1].ID})
}

func (s *Server) getDeliveries(w http.ResponseWriter, r *http.Request) {
	if s.deps.Deliveries == nil {
		writeError(w, http.StatusServiceUnavailable, "webhook deliveries: no alert webhook is configured (webhooks.alerts)")
		return
	}
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		if _, err := fmt.Sscan(q, &limit); err != nil || limit < 1 || limit > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: expected 1 to 1000", q))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": s.deps.Deliveries.Recent(limit)})
}

func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(openAPI)
}

// openAPI is the admin API's OpenAPI description.
//
//go:embed openapi.yaml
var openAPI []byte
