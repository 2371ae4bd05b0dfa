package sources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecurityValidate(t *testing.T) {
	for _, c := range []struct {
		sec  Security
		want string // "" = valid
	}{
		{Security{}, ""},
		{Security{SASL: SASLConfig{Mechanism: "plain", Username: "u", Password: "p"}}, ""},
		{Security{SASL: SASLConfig{Mechanism: "gssapi", Username: "u", Password: "p"}}, `mechanism: "gssapi": expected plain, scram-sha-256 or scram-sha-512`},
		{Security{SASL: SASLConfig{Mechanism: "scram-sha-512", Password: "p"}}, "sasl.username: required"},
		{Security{SASL: SASLConfig{Mechanism: "scram-sha-256", Username: "u"}}, "a password is required"},
		{Security{TLS: TLSConfig{Enabled: true, CertFile: "c.pem"}}, "cert_file and key_file go together"},
		{Security{TLS: TLSConfig{CAFile: "ca.pem"}}, "enabled is false"},
	} {
		err := c.sec.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", c.sec, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want one containing %q", c.sec, err, c.want)
		}
	}
}

func TestSecurityBuildsDialerAndTransport(t *testing.T) {
	var none Security
	if d, err := none.Dialer(); d != nil || err != nil {
		t.Fatalf("plaintext dialer = %v, %v; want nil (kafka-go's default)", d, err)
	}
	if rt, err := none.RoundTripper(); rt != nil || err != nil {
		t.Fatalf("plaintext transport = %v, %v; want nil", rt, err)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		s := Security{SASL: SASLConfig{Mechanism: mech, Username: "tariff", PasswordFile: pwFile}, TLS: TLSConfig{Enabled: true}}
		d, err := s.Dialer()
		if err != nil || d == nil || d.SASLMechanism == nil || d.TLS == nil {
			t.Fatalf("%s: dialer %+v, %v; want SASL and TLS set", mech, d, err)
		}
		tr, err := s.Transport()
		if err != nil || tr == nil || tr.SASL == nil || tr.TLS == nil {
			t.Fatalf("%s: transport %+v, %v; want SASL and TLS set", mech, tr, err)
		}
	}
	bad := Security{TLS: TLSConfig{Enabled: true, CAFile: filepath.Join(t.TempDir(), "missing.pem")}}
	if _, err := bad.Dialer(); err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Fatalf("missing CA file: %v, want an error naming tls.ca_file", err)
	}
}
