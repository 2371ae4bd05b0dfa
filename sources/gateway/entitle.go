package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Decision is an entitlement check's answer for one customer.
type Decision struct {
	// Allowed: the customer may use the API now (balance left, or overage
	// allowed by the plan). When false, the request is answered 402.
	Allowed bool
	// Status is the service's word for the state ("active", "paused"...),
	// for logs. Optional.
	Status string
	// Reason is shown to the caller of a refused request. Optional.
	Reason string
	// Remaining is the balance left, as the service wrote it (a decimal
	// string), for logs. Optional; never parsed as a float.
	Remaining string
}

// Entitler decides whether a customer may make a request.
//
// Check blocks for at most its own timeout (the HTTP implementation's is
// configured; ctx may shorten it). It must be safe for concurrent use. An
// error means "no decision" (service unreachable, malformed answer): the
// gateway then applies entitlement.on_error. The Decision is a value; the
// caller keeps nothing of the Entitler's.
type Entitler interface {
	Check(ctx context.Context, customer string) (Decision, error)
}

// AllowAll is the Entitler used when no entitlement service is configured:
// every identified customer is allowed, and no request is ever paused.
// Usage is still metered and billed; only the pre-request check is absent.
type AllowAll struct{}

// Check implements Entitler.
func (AllowAll) Check(context.Context, string) (Decision, error) {
	return Decision{Allowed: true, Status: "unchecked"}, nil
}

// HTTPEntitler asks the balance stage's entitlement endpoint:
//
//	GET {url}/v1/customers/{id}/entitlement
//	Authorization: Bearer <token>
//
//	200 {"customer_id":"acme","allowed":false,"status":"paused",
//	     "reason":"prepaid credit exhausted","remaining":"0"}
//
// "allowed" is required; the other fields are optional. Any other status
// (404 for a customer the service does not know included), a malformed
// body or a timeout is an error: no decision.
type HTTPEntitler struct {
	base    string
	auth    string
	timeout time.Duration
	client  *http.Client
}

// NewHTTPEntitler builds the HTTP Entitler of cfg, reading its token.
func NewHTTPEntitler(cfg EntitlementConfig) (*HTTPEntitler, error) {
	if cfg.URL == "" {
		return nil, errors.New("gateway.entitlement.url: empty: expected the entitlement service's base URL")
	}
	tok, err := cfg.Token.Load("gateway.entitlement.token", minSecretBytes)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultEntitlementTimeout
	}
	return &HTTPEntitler{
		base:    strings.TrimRight(cfg.URL, "/"),
		auth:    "Bearer " + string(tok),
		timeout: timeout,
		client: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}},
	}, nil
}

// entitlementAnswer is the service's JSON body.
// The balance stage's answer (pipeline/balance.Entitlement) has allowed,
// reason ("balance", "overage", "paused", "exhausted"), remaining (a
// decimal string), tokens_remaining, overage_allowed and paused.
type entitlementAnswer struct {
	Allowed   *bool           `json:"allowed"`
	Status    string          `json:"status"`
	Reason    string          `json:"reason"`
	Remaining json.RawMessage `json:"remaining"`
	Paused    bool            `json:"paused"`
}

// reasonText turns the balance stage's reason words into what a caller
// reads in a 402; any other reason is shown as given.
var reasonText = map[string]string{
	"paused":    "the account is paused",
	"exhausted": "no allowance or credit is left and the plan does not allow overage",
}

// Check implements Entitler.
func (e *HTTPEntitler) Check(ctx context.Context, customer string) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	u := e.base + "/v1/customers/" + url.PathEscape(customer) + "/entitlement"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Decision{}, fmt.Errorf("entitlement request: %w", err)
	}
	req.Header.Set("Authorization", e.auth)
	req.Header.Set("Accept", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return Decision{}, fmt.Errorf("entitlement check: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Decision{}, fmt.Errorf("entitlement check: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Decision{}, fmt.Errorf("entitlement check: status %d: expected 200", resp.StatusCode)
	}
	var a entitlementAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return Decision{}, fmt.Errorf("entitlement check: answer: %w", err)
	}
	if a.Allowed == nil {
		return Decision{}, errors.New(`entitlement check: answer has no "allowed": expected true or false`)
	}
	d := Decision{Allowed: *a.Allowed, Status: a.Status, Reason: a.Reason}
	if t, ok := reasonText[a.Reason]; ok {
		d.Reason = t
	}
	if d.Status == "" && a.Paused {
		d.Status = "paused"
	}
	if len(a.Remaining) > 0 && string(a.Remaining) != "null" {
		d.Remaining = strings.Trim(string(a.Remaining), `"`)
	}
	return d, nil
}
