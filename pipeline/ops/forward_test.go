package ops

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/rating"
)

// fakeRouter is a fake ownership map: customer -> owner instance; a
// customer not in it has no known owner.
type fakeRouter struct {
	self string
	mu   sync.Mutex
	// owners: customer -> instance id; urls: instance id -> base URL.
	owners map[string]string
	urls   map[string]string
}

func (f *fakeRouter) Self() string { return f.self }

func (f *fakeRouter) Route(customer string) (Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inst, ok := f.owners[customer]
	switch {
	case !ok:
		return Route{Partition: 3}, errors.New("partition 3: no owner known yet")
	case inst == f.self:
		return Route{Partition: 1, Local: true}, nil
	}
	return Route{Partition: 2, Instance: inst, URL: f.urls[inst]}, nil
}

// routedEntitlements is an instance's entitlement memory with its router.
type routedEntitlements struct {
	fakeEntitlements
	*fakeRouter
}

// routedAccounts is an instance's account store with its router.
type routedAccounts struct {
	fakeAccounts
	*fakeRouter
}

// requestLog records the requests a server received.
type requestLog struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Clone(r.Context()))
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) count() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.reqs) }

func (l *requestLog) last() *http.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reqs[len(l.reqs)-1]
}

type instance struct {
	url string
	log *requestLog
}

// twoInstances starts instances "a" and "b" sharing one ownership map
// (owners: customer -> "a" or "b"); a owns what entA/accA hold, b what
// entB/accB hold.
func twoInstances(t *testing.T, owners map[string]string, entA, entB fakeEntitlements, accA, accB fakeAccounts) (a, b instance, ra, rb *fakeRouter) {
	t.Helper()
	cfg := tokenConfig(t)
	urls := map[string]string{}
	ra = &fakeRouter{self: "a", owners: owners, urls: urls}
	rb = &fakeRouter{self: "b", owners: owners, urls: urls}
	start := func(r *fakeRouter, ent fakeEntitlements, acc fakeAccounts) instance {
		deps := Deps{Entitlements: routedEntitlements{ent, r}, Accounts: routedAccounts{acc, r}}
		ts := newTestServer(t, cfg, deps)
		log := &requestLog{}
		hs := httptest.NewServer(log.wrap(ts.Handler()))
		t.Cleanup(hs.Close)
		urls[r.self] = hs.URL
		return instance{url: hs.URL, log: log}
	}
	a = start(ra, entA, accA)
	b = start(rb, entB, accB)
	return a, b, ra, rb
}

func TestForwardEntitlement(t *testing.T) {
	owners := map[string]string{"paused": "b", "rich": "a", "nobody": "b"}
	a, b, _, _ := twoInstances(t, owners,
		fakeEntitlements{"rich": {Allowed: true, Reason: balance.ReasonBalance, Remaining: rating.MustAmount("7.5")}},
		fakeEntitlements{"paused": {Allowed: false, Reason: balance.ReasonPaused, Paused: true}},
		nil, nil)

	// Asked of a, the customer of b's partition gets b's answer.
	code, hdr, body := get(t, a.url+"/v1/customers/paused/entitlement", testToken)
	var v EntitlementView
	if code != http.StatusOK || json.Unmarshal(body, &v) != nil || !v.Known || v.Allowed || !v.Paused {
		t.Fatalf("paused customer asked of a: %d %s, want b's answer (known, not allowed, paused)", code, body)
	}
	if got := hdr.Get(HeaderServedBy); got != "b" {
		t.Fatalf("%s = %q, want b", HeaderServedBy, got)
	}
	req := b.log.last()
	if req.Header.Get("Authorization") != "Bearer "+testToken || req.Header.Get(HeaderForwardedBy) != "a" {
		t.Fatalf("forwarded request headers: %v, want the caller's token and %s: a", req.Header, HeaderForwardedBy)
	}
	if b.log.count() != 1 {
		t.Fatalf("b received %d requests, want 1", b.log.count())
	}

	// Asked of its owner, it is answered there, not forwarded.
	code, hdr, body = get(t, a.url+"/v1/customers/rich/entitlement", testToken)
	if code != http.StatusOK || !strings.Contains(string(body), `"remaining":"7.5"`) || hdr.Get(HeaderServedBy) != "a" || b.log.count() != 1 {
		t.Fatalf("own customer: %d %s served by %q, b saw %d requests", code, body, hdr.Get(HeaderServedBy), b.log.count())
	}

	// Unknown everywhere: the owner (b) says known=false, allowed.
	code, hdr, body = get(t, a.url+"/v1/customers/nobody/entitlement", testToken)
	if code != http.StatusOK || json.Unmarshal(body, &v) != nil || v.Known || !v.Allowed || hdr.Get(HeaderServedBy) != "b" {
		t.Fatalf("customer unknown everywhere: %d %s (served by %q), want b's known=false, allowed", code, body, hdr.Get(HeaderServedBy))
	}

	// The owner's refusal of a bad token comes back as it is.
	code, _, _ = get(t, a.url+"/v1/customers/paused/entitlement", "wrong-token-wrong-token")
	if code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d, want 401 (from a, before forwarding)", code)
	}
}

// TestForwardNotTwice: a forwarded request reaching an instance that does
// not own the partition (the maps disagree during a rebalance) is answered
// 503 there, not forwarded back.
func TestForwardNotTwice(t *testing.T) {
	owners := map[string]string{"paused": "b"}
	a, b, _, rb := twoInstances(t, owners, nil, nil, nil, nil)
	// b's map says a owns the customer; a's says b does.
	rb.owners = map[string]string{"paused": "a"}
	code, _, body := get(t, a.url+"/v1/customers/paused/entitlement", testToken)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "forwarded here by a") {
		t.Fatalf("disagreeing maps: %d %s, want 503 from b naming the forward", code, body)
	}
	if a.log.count() != 1 || b.log.count() != 1 {
		t.Fatalf("a saw %d requests, b %d: want 1 each (no bouncing)", a.log.count(), b.log.count())
	}
	if strings.Contains(string(body), `"allowed"`) {
		t.Fatalf("a 503 must not carry an answer: %s", body)
	}
}

// TestForwardToItself: an owner URL that reaches the asking instance (a
// loopback default on several hosts) is reported, not looped.
func TestForwardToItself(t *testing.T) {
	a, b, ra, _ := twoInstances(t, map[string]string{"paused": "b"}, nil, nil, nil, nil)
	ra.mu.Lock()
	ra.urls["b"] = a.url
	ra.mu.Unlock()
	code, _, body := get(t, a.url+"/v1/customers/paused/entitlement", testToken)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "came back to this instance") || !strings.Contains(string(body), "ops.advertise_url") {
		t.Fatalf("owner URL reaching the asker: %d %s, want 503 naming ops.advertise_url", code, body)
	}
	if a.log.count() != 2 || b.log.count() != 0 {
		t.Fatalf("a saw %d requests, b %d: want 2 and 0", a.log.count(), b.log.count())
	}
}

func TestForwardOwnerDownOrUnknown(t *testing.T) {
	owners := map[string]string{"paused": "b", "c": "gone"}
	a, _, ra, _ := twoInstances(t, owners, nil, nil, nil, nil)
	// b stops answering: a listener that accepts nothing at b's address.
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	ra.mu.Lock()
	ra.urls["b"] = downURL
	ra.mu.Unlock()
	for _, path := range []string{"/entitlement", "", "/statement"} {
		code, _, body := get(t, a.url+"/v1/customers/paused"+path, testToken)
		if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "owner b of partition 2") || !strings.Contains(string(body), "did not answer") {
			t.Fatalf("owner down, %q: %d %s, want 503 naming the owner", path, code, body)
		}
	}
	// A slow owner is given up on within the entitlement timeout.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	ra.mu.Lock()
	ra.urls["b"] = slow.URL
	ra.mu.Unlock()
	t0 := time.Now()
	code, _, body := get(t, a.url+"/v1/customers/paused/entitlement", testToken)
	if took := time.Since(t0); code != http.StatusServiceUnavailable || took > time.Second || !strings.Contains(string(body), "no answer within") {
		t.Fatalf("slow owner: %d %s after %s, want 503 within the forward timeout", code, body, took)
	}
	// No owner known for the customer's partition.
	for _, path := range []string{"/entitlement", "", "/statement"} {
		code, _, body := get(t, a.url+"/v1/customers/unowned"+path, testToken)
		if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "no owner known") {
			t.Fatalf("unknown owner, %q: %d %s, want 503 with the reason", path, code, body)
		}
	}
}

func TestForwardAccountAndStatement(t *testing.T) {
	oct1 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	acct := balance.NewAccount("acme")
	var fx balance.Effects
	if _, err := acct.Apply(&balance.Command{ID: "c1", CustomerID: "acme", Kind: balance.CommandGrant, At: oct1,
		Grant: &balance.Grant{ID: "pack", Amount: rating.MustAmount("10.25")}}, &fx); err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{"acme": "b", "ghost": "b"}
	a, b, _, _ := twoInstances(t, owners, nil, nil, nil, fakeAccounts{"acme": {acct, nil}})

	code, hdr, body := get(t, a.url+"/v1/customers/acme", testToken)
	var av AccountView
	if code != http.StatusOK || json.Unmarshal(body, &av) != nil || av.Entitlement.Remaining != "10.25" || hdr.Get(HeaderServedBy) != "b" {
		t.Fatalf("account asked of a: %d %s served by %q, want b's account", code, body, hdr.Get(HeaderServedBy))
	}
	code, hdr, body = get(t, a.url+"/v1/customers/acme/statement?period=current", testToken)
	var sv StatementsView
	if code != http.StatusOK || json.Unmarshal(body, &sv) != nil || len(sv.Statements) != 1 || hdr.Get(HeaderServedBy) != "b" {
		t.Fatalf("statement asked of a: %d %s, want b's statement", code, body)
	}
	if got := b.log.last().URL.RequestURI(); got != "/v1/customers/acme/statement?period=current" {
		t.Fatalf("forwarded as %s, want the query kept", got)
	}
	// Unknown on its owner: the owner's 404.
	code, hdr, body = get(t, a.url+"/v1/customers/ghost", testToken)
	if code != http.StatusNotFound || hdr.Get(HeaderServedBy) != "" && hdr.Get(HeaderServedBy) != "b" {
		t.Fatalf("account unknown everywhere: %d %s, want b's 404", code, body)
	}
	if b.log.last().URL.Path != "/v1/customers/ghost" {
		t.Fatalf("b last saw %s, want the forwarded read of ghost", b.log.last().URL.Path)
	}
}

// TestEntitlementWithoutRouter: one instance (no router) answers as
// before, with no forwarding headers.
func TestEntitlementWithoutRouter(t *testing.T) {
	ts := newTestServer(t, tokenConfig(t), Deps{Entitlements: fakeEntitlements{}})
	code, hdr, body := get(t, ts.url+"/v1/customers/x/entitlement", testToken)
	if code != http.StatusOK || !strings.Contains(string(body), `"known":false`) || hdr.Get(HeaderServedBy) != "" {
		t.Fatalf("%d %s %v", code, body, hdr)
	}
}

func TestConfigAdvertise(t *testing.T) {
	for _, c := range []struct {
		cfg   Config
		bound string
		want  string
	}{
		{Config{Listen: "127.0.0.1:9464"}, "", "http://127.0.0.1:9464"},
		{Config{Listen: "127.0.0.1:0"}, "127.0.0.1:41234", "http://127.0.0.1:41234"},
		{Config{Listen: "0.0.0.0:9464"}, "", ""},
		{Config{Listen: "[::]:9464"}, "", ""},
		{Config{Listen: ":9464"}, "", ""},
		{Config{Listen: "0.0.0.0:9464", AdvertiseURL: "http://10.0.0.5:9464/"}, "", "http://10.0.0.5:9464"},
		{Config{Listen: Off}, "", ""},
	} {
		if got := c.cfg.Advertise(c.bound); got != c.want {
			t.Errorf("%+v bound %q: Advertise = %q, want %q", c.cfg, c.bound, got, c.want)
		}
	}
	for _, bad := range []string{"10.0.0.5:9464", "ftp://x", "http://", "http://0.0.0.0:9464", "http://x/?a=1"} {
		c := Config{AdvertiseURL: bad}
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ops.advertise_url") {
			t.Errorf("advertise_url %q: %v, want an error naming ops.advertise_url", bad, err)
		}
	}
	c := Config{AdvertiseURL: "https://tariff-1.internal:9464"}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("good advertise_url: %v", err)
	}
}
