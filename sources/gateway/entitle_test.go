package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPEntitler(t *testing.T) {
	const token = "entitlement-token-0123456789"
	t.Setenv("TARIFF_TEST_GW_ENT_TOKEN", token)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.EscapedPath() {
		case "/base/v1/customers/acme/entitlement":
			_, _ = w.Write([]byte(`{"customer_id":"acme","allowed":true,"status":"active","remaining":"12.50"}`))
		case "/base/v1/customers/team%2Fbeta/entitlement":
			_, _ = w.Write([]byte(`{"customer_id":"team/beta","allowed":false,"status":"paused","reason":"prepaid credit exhausted","remaining":0}`))
		case "/base/v1/customers/initech/entitlement": // pipeline/balance.Entitlement as JSON
			_, _ = w.Write([]byte(`{"allowed":false,"reason":"exhausted","remaining":"0","tokens_remaining":0,"overage_allowed":false,"paused":false}`))
		case "/base/v1/customers/odd/entitlement":
			_, _ = w.Write([]byte(`{"status":"active"}`))
		case "/base/v1/customers/slow/entitlement":
			time.Sleep(300 * time.Millisecond)
			_, _ = w.Write([]byte(`{"allowed":true}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	e, err := NewHTTPEntitler(EntitlementConfig{URL: srv.URL + "/base/", Token: Secret{Env: "TARIFF_TEST_GW_ENT_TOKEN"}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if d, err := e.Check(ctx, "acme"); err != nil || !d.Allowed || d.Remaining != "12.50" || d.Status != "active" {
		t.Errorf("acme: %+v %v", d, err)
	}
	if d, err := e.Check(ctx, "team/beta"); err != nil || d.Allowed || d.Reason != "prepaid credit exhausted" || d.Remaining != "0" {
		t.Errorf("team/beta: %+v %v", d, err)
	}
	if d, err := e.Check(ctx, "initech"); err != nil || d.Allowed || !strings.Contains(d.Reason, "does not allow overage") || d.Remaining != "0" {
		t.Errorf("initech: %+v %v", d, err)
	}
	for customer, want := range map[string]string{"odd": `no "allowed"`, "ghost": "status 404", "slow": "deadline exceeded"} {
		if _, err := e.Check(ctx, customer); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", customer, err, want)
		}
	}
	if d, err := (AllowAll{}).Check(ctx, "anyone"); err != nil || !d.Allowed {
		t.Errorf("AllowAll: %+v %v", d, err)
	}
}
