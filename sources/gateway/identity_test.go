package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "keys")
	ks, err := OpenKeyStore(path) // no file yet: no keys
	if err != nil || ks.Len() != 0 {
		t.Fatalf("%v %d", err, ks.Len())
	}
	k1, r1, err := AddKey(path, "acme", testNow)
	if err != nil {
		t.Fatal(err)
	}
	k2, _, err := AddKey(path, "acme", testNow)
	if err != nil {
		t.Fatal(err)
	}
	k3, r3, err := AddKey(path, "globex", testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k1, "tgw_"+r1.ID+"_") || len(k1) != len("tgw_")+8+1+43 || k1 == k2 {
		t.Fatalf("keys %q %q", k1, k2)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v: %v", st.Mode(), err)
	}
	if changed, err := ks.Reload(); !changed || err != nil || ks.Len() != 3 {
		t.Fatalf("reload: %v %v %d", changed, err, ks.Len())
	}
	for key, want := range map[string]string{k1: "acme", k2: "acme", k3: "globex"} {
		sum := HashKey(key)
		if r, ok := ks.lookup(&sum); !ok || r.Customer != want {
			t.Errorf("lookup: %v %v, want %s", r, ok, want)
		}
	}
	if changed, _ := ks.Reload(); changed {
		t.Error("reload of an unchanged file reported a change")
	}
	gone, err := RevokeKeys(path, r3.ID, "")
	if err != nil || len(gone) != 1 || gone[0].Customer != "globex" {
		t.Fatalf("revoke by id: %v %v", gone, err)
	}
	if gone, err = RevokeKeys(path, "", "acme"); err != nil || len(gone) != 2 {
		t.Fatalf("revoke by customer: %v %v", gone, err)
	}
	if _, err := ks.Reload(); err != nil || ks.Len() != 0 {
		t.Fatalf("after revoking everything: %v %d keys", err, ks.Len())
	}
	sum := HashKey(k1)
	if _, ok := ks.lookup(&sum); ok {
		t.Fatal("a revoked key still works")
	}
	if _, _, err := AddKey(path, "has space", testNow); err == nil {
		t.Fatal("a customer id with a space was accepted")
	}
}

func TestKeyFileErrorsNameTheLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	content := keyFileHeader + "abcd0123 sha256:" + strings.Repeat("0", 64) + " acme 2026-11-20T09:30:00Z\nabcd0124 sha256:xyz acme 2026-11-20T09:30:00Z\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKeyStore(path); err == nil || !strings.Contains(err.Error(), "line 4: hash sha256:xyz") {
		t.Fatalf("%v", err)
	}
}

// TestGatewayReloadsKeys: a key added while the gateway runs works within
// reload_interval, and a revoked one stops working.
func TestGatewayReloadsKeys(t *testing.T) {
	e := newEnv(t, nil)
	key, rec, err := AddKey(e.keyFile, "initech", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.keys["initech"] = key
	waitFor(t, "the new key to work", func() bool {
		status, _ := e.call("/v1/chat/completions", "initech", chatBody)
		return status == 200
	})
	if _, err := RevokeKeys(e.keyFile, rec.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revoked key to stop working", func() bool {
		status, _ := e.call("/v1/chat/completions", "initech", chatBody)
		return status == 401
	})
}
