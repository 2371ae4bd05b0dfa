package ops

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/rating"
)

type fakeEntitlements map[string]balance.Entitlement

func (f fakeEntitlements) Entitlement(c string, _ time.Time) (balance.Entitlement, bool) {
	e, ok := f[c]
	return e, ok
}

func TestEntitlementEndpoint(t *testing.T) {
	ts := newTestServer(t, tokenConfig(t), Deps{Entitlements: fakeEntitlements{
		"acme":   {Allowed: true, Reason: balance.ReasonBalance, Remaining: rating.MustAmount("12.345")},
		"globex": {Allowed: false, Reason: balance.ReasonPaused, Paused: true},
	}})
	var v EntitlementView
	getJSON(t, ts.url+"/v1/customers/acme/entitlement", &v)
	if !v.Known || !v.Allowed || v.Reason != "balance" || v.Remaining != "12.345" {
		t.Fatalf("acme: %+v", v)
	}
	getJSON(t, ts.url+"/v1/customers/globex/entitlement", &v)
	if !v.Known || v.Allowed || !v.Paused || v.Reason != "paused" {
		t.Fatalf("globex: %+v, want paused and not allowed", v)
	}
	getJSON(t, ts.url+"/v1/customers/initech/entitlement", &v)
	if v.Known || !v.Allowed || !v.OverageAllowed {
		t.Fatalf("unknown customer: %+v, want allowed (pay as you go) and known=false", v)
	}
	if code, _, body := get(t, ts.url+"/v1/customers/acme/entitlement", ""); code != http.StatusUnauthorized || !strings.Contains(string(body), "token") {
		t.Fatalf("without a token: %d %s, want 401 naming the token", code, body)
	}
}
