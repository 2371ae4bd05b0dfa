package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestConfigValidateNamesEveryBadField(t *testing.T) {
	c := Config{
		Brokers:     []string{""},
		Trusted:     &TrustedConfig{CustomerHeader: "Authorization"},
		Entitlement: EntitlementConfig{URL: "ftp://x", OnError: "maybe"},
		Spool:       SpoolConfig{BatchSize: -1},
		Upstreams: []Upstream{
			{Name: "a b", Kind: "azure", BaseURL: "api.openai.com"},
			{Name: "dup", Kind: KindOpenAI, Key: Secret{Env: "X", File: "y"}, APIs: []string{"chat"}},
			{Name: "dup", Kind: KindOpenAICompatible, Headers: map[string]string{"Authorization": "x"}},
		},
		Routes:          []Route{{Model: "m", Prefix: "p", Upstream: "nope"}},
		DefaultUpstream: "ghost",
	}
	c.SetDefaults()
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted a bad config")
	}
	for _, want := range []string{
		"gateway.brokers[0]: empty",
		"gateway.trusted_header.secret: expected env",
		"gateway.trusted_header.customer_header: \"Authorization\"",
		"gateway.entitlement.url: \"ftp://x\"",
		"gateway.entitlement.token: expected env",
		"gateway.entitlement.on_error: \"maybe\"",
		"gateway.spool.batch_size: -1",
		"gateway.upstreams[0].name: \"a b\"",
		"gateway.upstreams[0].kind: \"azure\"",
		"gateway.upstreams[0].base_url: \"api.openai.com\"",
		"gateway.upstreams[0].key: expected env",
		"gateway.upstreams[1].key: both env and file",
		"gateway.upstreams[1].apis[0]: \"chat\"",
		"gateway.upstreams[2].name: \"dup\": already used",
		"gateway.upstreams[2].base_url: \"\"",
		"gateway.upstreams[2].headers: \"Authorization\"",
		"gateway.routes[0]: expected exactly one of model and prefix",
		"gateway.routes[0].upstream: \"nope\"",
		"gateway.default_upstream: \"ghost\"",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}

func TestLoadExampleConfig(t *testing.T) {
	c, err := LoadFile("gateway.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("gateway.example.yaml: %v", err)
	}
	if len(c.Upstreams) < 3 || c.Entitlement.OnError != OnErrorAllow {
		t.Fatalf("%+v", c)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("gateway:\n  listn: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(bad); err == nil || !strings.Contains(err.Error(), "listn") {
		t.Fatalf("a misspelt field was accepted: %v", err)
	}
}

func TestNewRefusesMissingSecrets(t *testing.T) {
	cfg := testConfig(t, "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1")
	cfg.Upstreams[0].Key = Secret{Env: "TARIFF_TEST_GW_UNSET_KEY"}
	cfg.Trusted = &TrustedConfig{Secret: Secret{File: filepath.Join(t.TempDir(), "missing")}}
	_, err := New(cfg, nopPublisher{}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "TARIFF_TEST_GW_UNSET_KEY is not set") || !strings.Contains(err.Error(), "trusted_header.secret.file") {
		t.Fatalf("New: %v", err)
	}
	if strings.Contains(err.Error(), testOpenAIKey) {
		t.Fatal("an error shows a secret")
	}
}
