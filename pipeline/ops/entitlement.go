package ops

import (
	"net/http"
	"time"

	"github.com/tariff-dev/tariff/pipeline/balance"
)

// Entitlements answers from memory whether a customer may use more. It
// must not block: an AI gateway asks before every request.
type Entitlements interface {
	// Entitlement returns the customer's entitlement at now; known is
	// false when this instance holds no account for the customer (never
	// seen, or owned by another instance's partitions).
	Entitlement(customer string, now time.Time) (e balance.Entitlement, known bool)
}

// EntitlementView is the JSON answer of GET /v1/customers/{id}/entitlement.
// Money is an exact decimal string.
type EntitlementView struct {
	CustomerID      string `json:"customer_id"`
	Known           bool   `json:"known"`
	Allowed         bool   `json:"allowed"`
	Reason          string `json:"reason"`
	Remaining       string `json:"remaining"`
	TokensRemaining int64  `json:"tokens_remaining"`
	OverageAllowed  bool   `json:"overage_allowed"`
	Paused          bool   `json:"paused"`
}

// entitlement answers whether usage is allowed. A customer without an
// account here whose partition another instance owns is asked of that
// instance (forward.go); one without an account anywhere is allowed and
// known=false: with no plan a customer is pay as you go; a gateway that
// must refuse unknown customers checks known. When the owner cannot be
// asked the answer is 503, never "allowed".
func (s *Server) entitlement(w http.ResponseWriter, r *http.Request) {
	if s.deps.Entitlements == nil {
		writeError(w, http.StatusServiceUnavailable, "entitlement: the balance stage does not run in this process")
		return
	}
	id := r.PathValue("id")
	if id == "" || len(id) > 512 {
		writeError(w, http.StatusBadRequest, "customer id: expected 1 to 512 bytes")
		return
	}
	now := time.Now()
	if s.deps.Now != nil {
		now = s.deps.Now()
	}
	e, known := s.deps.Entitlements.Entitlement(id, now)
	if !known && s.forward(w, r, id, forwardEntitlementTimeout) {
		return
	}
	s.markServed(w)
	v := EntitlementView{CustomerID: id, Known: known, Allowed: true, Reason: "no account: pay as you go", Remaining: "0", OverageAllowed: true}
	if known {
		v = EntitlementView{CustomerID: id, Known: true, Allowed: e.Allowed, Reason: e.Reason.String(), Remaining: e.Remaining.String(),
			TokensRemaining: e.TokensRemaining, OverageAllowed: e.OverageAllowed, Paused: e.Paused}
	}
	writeJSON(w, http.StatusOK, v)
}
