package ops

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
)

// Customers lists customers with their balance, plan and pause state for
// the dashboard. The balance stage implements it; until it runs, the
// dashboard says balances are not available rather than show anything.
type Customers interface {
	// ListCustomers returns up to q.Limit customers whose id contains
	// q.Match (case-insensitive), in id order, starting after q.After. It
	// blocks at most until ctx ends (the request's deadline) and must not
	// wait for the pipeline. The page belongs to the caller.
	ListCustomers(ctx context.Context, q CustomerQuery) (CustomerPage, error)
}

// CustomerQuery selects a page of customers.
type CustomerQuery struct {
	Match string
	After string // the last id of the previous page; "" for the first
	Limit int    // 1..500
}

// CustomerPage is one page of customers; Next is the After of the next
// page, "" on the last.
type CustomerPage struct {
	Customers []Customer `json:"customers"`
	Next      string     `json:"next,omitempty"`
}

// Customer is one customer's account state. Money is exact: Balance and
// CreditLimit are decimals, serialized as strings.
type Customer struct {
	ID string `json:"id"`
	// Plan is the customer's plan or rate card, as the balance stage names it.
	Plan string `json:"plan"`
	// Balance is the prepaid credit remaining (negative: owed), in Currency.
	Balance  decimal.Decimal `json:"balance"`
	Currency string          `json:"currency"`
	// CreditLimit is how far below zero the balance may go before usage is
	// paused; nil when there is none.
	CreditLimit *decimal.Decimal `json:"credit_limit,omitempty"`
	Paused      bool             `json:"paused"`
	PauseReason string           `json:"pause_reason,omitempty"`
	PausedAt    *time.Time       `json:"paused_at,omitempty"`
	// UpdatedAt is when the balance last changed.
	UpdatedAt time.Time `json:"updated_at"`
}

// CustomersView is what /v1/customers returns.
type CustomersView struct {
	Available bool       `json:"available"`
	Reason    string     `json:"reason,omitempty"`
	Customers []Customer `json:"customers"`
	Next      string     `json:"next,omitempty"`
}

// NoCustomers is the reason shown while no balance stage runs.
const NoCustomers = "customer balances, plans and pause state come from the balance stage, which this tariff does not run yet"

func (s *Server) apiCustomers(w http.ResponseWriter, r *http.Request) {
	if s.deps.Customers == nil {
		writeJSON(w, http.StatusOK, CustomersView{Reason: NoCustomers, Customers: []Customer{}})
		return
	}
	q := CustomerQuery{Match: r.URL.Query().Get("q"), After: r.URL.Query().Get("after"), Limit: 100}
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusBadRequest, "limit: "+strconv.Quote(l)+": expected 1..500")
			return
		}
		q.Limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	page, err := s.deps.Customers.ListCustomers(ctx, q)
	if err != nil {
		s.log.Warn().Err(err).Msg("list customers")
		writeError(w, http.StatusBadGateway, "list customers: "+err.Error())
		return
	}
	if page.Customers == nil {
		page.Customers = []Customer{}
	}
	writeJSON(w, http.StatusOK, CustomersView{Available: true, Customers: page.Customers, Next: page.Next})
}
