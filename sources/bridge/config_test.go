package bridge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestExampleConfig(t *testing.T) {
	t.Setenv(envListen, "")
	t.Setenv(envBrokers, "")
	cfg, err := LoadFile("bridge.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	if cfg.Listen != DefaultListen || len(cfg.Endpoints) != 3 || cfg.Endpoints[2].HMAC.MaxSkew != 5*time.Minute {
		t.Fatalf("unexpected example: %+v", cfg)
	}
	// The environment overrides the file.
	t.Setenv(envBrokers, "k1:9092, k2:9092")
	t.Setenv(envListen, "0.0.0.0:9000")
	cfg, err = LoadFile("bridge.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Brokers, ",") != "k1:9092,k2:9092" || cfg.Listen != "0.0.0.0:9000" {
		t.Fatalf("env overrides not applied: %v %s", cfg.Brokers, cfg.Listen)
	}
}

func TestLoadFileUnknownField(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.yaml")
	os.WriteFile(p, []byte("bridge:\n  listen: x\n  endpionts: []\n"), 0o600)
	if _, err := LoadFile(p); err == nil || !strings.Contains(err.Error(), "endpionts") {
		t.Fatalf("want an error naming the misspelt field, got %v", err)
	}
}

func TestValidate(t *testing.T) {
	f := func(name string, edit func(*Config), want ...string) {
		t.Helper()
		cfg := testConfig(t)
		edit(&cfg)
		cfg.SetDefaults()
		err := cfg.Validate()
		if len(want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			return
		}
		if err == nil {
			t.Errorf("%s: no error, want %q", name, want)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", name, err, w)
			}
		}
	}
	f("valid", func(c *Config) {})
	f("no brokers, no endpoints", func(c *Config) { c.Brokers, c.Endpoints = nil, nil },
		"bridge.brokers: expected at least one", "bridge.endpoints: expected at least one")
	f("endpoint fields", func(c *Config) {
		e := &c.Endpoints[0]
		e.Name, e.Path, e.Format, e.Topic, e.Token = "bad name", "v1/x", "csv", "", Secret{}
	},
		`bridge.endpoints[0].name: "bad name": expected letters`,
		`bridge.endpoints[0].path: "v1/x": expected a URL path starting with '/'`,
		`bridge.endpoints[0].format: "csv": expected litellm, openrouter, meter or gateway`,
		"bridge.endpoints[0].topic: empty",
		"bridge.endpoints[0].token: expected env")
	f("duplicates", func(c *Config) { c.Endpoints[1].Name, c.Endpoints[1].Path = c.Endpoints[0].Name, c.Endpoints[0].Path },
		`bridge.endpoints[1].name: "litellm": already used by endpoints[0]`, `bridge.endpoints[1].path: "/v1/ingest/litellm": already used`)
	f("reserved path", func(c *Config) { c.Endpoints[0].Path = "/healthz" }, "bridge.endpoints[0].path")
	f("trailing slash", func(c *Config) { c.Endpoints[0].Path = "/v1/" }, "without a trailing '/'")
	f("both secrets", func(c *Config) { c.Endpoints[0].Token.File = "/x" }, "bridge.endpoints[0].token: both env and file")
	f("hmac", func(c *Config) {
		c.Endpoints[3].HMAC.SignatureHeader = "X-Same"
		c.Endpoints[3].HMAC.TimestampHeader = "x-same"
		c.Endpoints[3].HMAC.MaxSkew = -time.Second
	}, "bridge.endpoints[3].hmac: signature_header and timestamp_header", "bridge.endpoints[3].hmac.max_skew: -1s")
	f("customer fields", func(c *Config) {
		c.Endpoints[0].CustomerFields = []string{"metadata..x"}
		c.Endpoints[2].CustomerFields = []string{"customer_id"}
	}, "bridge.endpoints[0].customer_fields", "bridge.endpoints[2].customer_fields: not allowed for format gateway")
	f("custom customer fields", func(c *Config) { c.Endpoints[0].CustomerFields = []string{"metadata.user_api_key_team_id"} })
	f("timeouts", func(c *Config) { c.PublishTimeout = time.Minute; c.RetryAfter = time.Millisecond },
		"bridge.shutdown_timeout: 30s: expected more than publish_timeout", "bridge.retry_after: 1ms")
	f("tls", func(c *Config) { c.TLSCertFile = "cert.pem" }, "bridge.tls_cert_file, bridge.tls_key_file: expected both or neither")
	f("body size", func(c *Config) { c.Endpoints[0].MaxBodyBytes = -1 }, "bridge.endpoints[0].max_body_bytes: -1")
}

func TestNewReadsSecrets(t *testing.T) {
	cfg := testConfig(t)
	t.Setenv(testEnvToken, "short")
	os.Unsetenv(testEnvMeter)
	cfg.Endpoints[3].HMAC.Secret = Secret{File: filepath.Join(t.TempDir(), "missing")}
	_, err := New(cfg, &fakePublisher{}, zerolog.Nop())
	if err == nil {
		t.Fatal("New accepted missing and short secrets")
	}
	for _, w := range []string{
		"bridge.endpoints[0].token (env:" + testEnvToken + "): 5 bytes: expected at least 16",
		"bridge.endpoints[3].token.env: environment variable " + testEnvMeter + " is not set",
		"bridge.endpoints[3].hmac.secret.file:",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Errorf("error reveals the secret: %v", err)
	}
}
