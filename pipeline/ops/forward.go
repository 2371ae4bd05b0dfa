package ops

// Forwarding reads of a customer to the instance that owns it.
//
// With several instances in one consumer group, a customer's account is
// in the memory of one instance only: the owner of the customer's
// partition. Any instance may be asked (the gateway calls one URL), so an
// instance without the customer forwards GET /v1/customers/{id},
// /entitlement and /statement to the owner and returns its answer. Were
// it to answer from its own memory, it would say "never seen": allowed,
// pay as you go, for a paused or exhausted customer.
//
// When no owner can be asked (none known yet, the partition moving, the
// owner not answering) the answer is 503 with the reason, never "allowed":
// the caller's own policy decides (the gateway's entitlement.on_error).
// A forwarded request carries headerForwardedBy and is never forwarded
// again: the instance it reaches answers from memory if it owns the
// partition, else 503, so two instances with different maps cannot bounce
// a request between them.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Headers of forwarding.
const (
	// HeaderForwardedBy marks a forwarded request with the instance that
	// forwarded it.
	HeaderForwardedBy = "Tariff-Forwarded-By"
	// HeaderServedBy names the instance whose memory an answer comes from.
	HeaderServedBy = "Tariff-Served-By"
)

// Forward timeouts: the entitlement check is on every gateway request
// (whose own default timeout is 250ms), so its hop must answer sooner than
// the gateway gives up, to return a 503 with a reason rather than a
// timeout; account and statement reads are for people and may take
// longer.
const (
	forwardEntitlementTimeout = 200 * time.Millisecond
	forwardReadTimeout        = 2 * time.Second
)

// Route is where a customer's account lives.
type Route struct {
	// Partition is the customer's partition number.
	Partition int
	// Local: this instance owns the partition now, so a customer it has
	// no account for has none anywhere.
	Local bool
	// Instance and URL name the owner (when not Local): its id and admin
	// API base URL.
	Instance, URL string
}

// Router locates customers among the instances of the group. An
// Entitlements or Accounts dependency that also implements Router makes
// the server forward reads of customers it holds no account for.
type Router interface {
	// Route returns where customer's account lives; an error says why no
	// instance can be asked (no owner known, the partition moving, the
	// owner advertising no URL). It must not block.
	Route(customer string) (Route, error)
	// Self is this instance's id.
	Self() string
}

// forwardClient keeps connections to the other instances open: a forward
// is on the gateway's path, and a TCP (or TLS) handshake per request would
// cost more than the answer. Timeouts are per request (context).
var forwardClient = &http.Client{
	Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: forwardReadTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64, // the gateway keeps up to 256 to one instance; most are answered locally
		IdleConnTimeout:     90 * time.Second,
	},
	// A redirect from another instance is not an answer to forward.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// router returns the deps' Router, nil when none (one instance, or
// forwarding not wired).
func (s *Server) router() Router {
	if rt, ok := s.deps.Entitlements.(Router); ok {
		return rt
	}
	if rt, ok := s.deps.Accounts.(Router); ok {
		return rt
	}
	return nil
}

// markServed names this instance as the one answering, when instances
// forward to each other.
func (s *Server) markServed(w http.ResponseWriter) {
	if rt := s.router(); rt != nil {
		w.Header().Set(HeaderServedBy, rt.Self())
	}
}

// forward answers r from the owner of customer's partition, for a
// customer this instance holds no account for. It returns false when the
// caller answers from here: there is no Router (one instance), or this
// instance owns the partition (the customer is unknown everywhere). Else
// it has written the owner's answer, or a 503 saying why there is none.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, customer string, timeout time.Duration) bool {
	rt := s.router()
	if rt == nil {
		return false
	}
	route, err := rt.Route(customer)
	if err == nil && route.Local {
		return false
	}
	if by := r.Header.Get(HeaderForwardedBy); by == rt.Self() {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf(
			"customer %q: forwarded to the owner of partition %d, the request came back to this instance: the owner's advertised URL %s reaches this instance (a loopback address on another host?); set ops.advertise_url on every instance to an address the others can reach",
			customer, route.Partition, route.URL))
		return true
	} else if by != "" {
		// The sender's map names this instance as the owner, and it is
		// not (or no longer): say so rather than bounce it further.
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf(
			"customer %q: forwarded here by %s as the owner of partition %d, which this instance does not own now (the group is rebalancing); retry shortly",
			customer, by, route.Partition))
		return true
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("customer %q: this instance does not own its partition and cannot ask the owner: %v", customer, err))
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, route.URL+r.URL.RequestURI(), nil)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("customer %q: owner %s of partition %d: URL %q: %v", customer, route.Instance, route.Partition, route.URL, err))
		return true
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set("Accept", "application/json")
	req.Header.Set(HeaderForwardedBy, rt.Self())
	resp, err := forwardClient.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		body, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err == nil {
			h := w.Header()
			h.Set("Content-Type", resp.Header.Get("Content-Type"))
			served := resp.Header.Get(HeaderServedBy)
			if served == "" {
				served = route.Instance
			}
			h.Set(HeaderServedBy, served)
			w.WriteHeader(resp.StatusCode)
			_, _ = w.Write(body) // a failed write is the client gone
			return true
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = errors.New("no answer within " + timeout.String())
	}
	s.log.Warn().Err(err).Str("customer", customer).Int("partition", route.Partition).Str("owner", route.Instance).Msg("forward to the partition's owner failed")
	writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("customer %q: owner %s of partition %d at %s did not answer: %v",
		customer, route.Instance, route.Partition, route.URL, err))
	return true
}
