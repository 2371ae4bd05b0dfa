package ops

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultListen        = "127.0.0.1:9464"
	DefaultAdminTokenEnv = "TARIFF_ADMIN_TOKEN"
	DefaultCheckTimeout  = 2 * time.Second
	// Off as ops.listen turns the ops server off.
	Off = "off"
	// minTokenBytes keeps guessable tokens out: 16 bytes is 128 bits when
	// random, as `openssl rand -hex 16` makes them.
	minTokenBytes = 16
)

// Config is the `ops` section: the HTTP server for /metrics, /healthz,
// /readyz and the dashboard.
type Config struct {
	// Listen is the server's host:port. Default "127.0.0.1:9464" (loopback:
	// set "0.0.0.0:9464" for a scraper or a load balancer on another host,
	// behind TLS if the dashboard is reachable beyond a trusted network).
	// "off" turns the server off. Env: TARIFF_OPS_LISTEN.
	Listen string `yaml:"listen"`
	// AdminToken is the bearer token the dashboard and its JSON API
	// require (/metrics, /healthz and /readyz are open). Read from the
	// environment variable named by env (default TARIFF_ADMIN_TOKEN) or
	// from file; at least 16 bytes. With neither set and a loopback
	// listen address, tariff makes a random token at start and prints the
	// dashboard's address with it; on any other address the dashboard
	// stays closed until a token is set.
	AdminToken Secret `yaml:"admin_token"`
	// CheckTimeout bounds each readiness check (Kafka, ClickHouse, the
	// state store). Default 2s.
	CheckTimeout time.Duration `yaml:"check_timeout"`
	// AdvertiseURL is the base URL other instances of the consumer group
	// reach this server's admin API at, e.g. "http://10.0.0.5:9464": an
	// instance asked about a customer whose partition another instance
	// owns forwards the read there (forward.go). Default: "http://" +
	// listen when listen names a host (a loopback address reaches only
	// instances on the same host); with a wildcard listen address
	// (0.0.0.0, ::, or none) there is no default, and reads of this
	// instance's customers are not forwarded here until it is set.
	// Env: TARIFF_OPS_ADVERTISE_URL.
	AdvertiseURL string `yaml:"advertise_url"`
}

// Secret says where a secret is read from: an environment variable or a
// file (trailing whitespace trimmed). It is read at start and never
// logged; String names only its origin.
type Secret struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

func (s Secret) String() string {
	switch {
	case s.File != "":
		return "file " + s.File
	case s.Env != "":
		return "environment variable " + s.Env
	}
	return "unset"
}

// Load reads the secret: the file when File is set, else the
// environment variable. "" with a nil error means it is not set.
func (s Secret) Load() (string, error) {
	if s.File != "" {
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("ops.admin_token.file: %w", err)
		}
		return string(bytes.TrimSpace(b)), nil
	}
	if s.Env != "" {
		return strings.TrimSpace(os.Getenv(s.Env)), nil
	}
	return "", nil
}

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.AdminToken.Env == "" && c.AdminToken.File == "" {
		c.AdminToken.Env = DefaultAdminTokenEnv
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = DefaultCheckTimeout
	}
}

// Enabled reports whether the server runs.
func (c *Config) Enabled() bool { return c.Listen != Off }

// Validate names every bad field with what was expected. It reads the
// admin token to check its length, and never prints it.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen != Off {
		if err := checkListen(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("ops.listen: %q: %w", c.Listen, err))
		}
	}
	if c.AdminToken.Env != "" && c.AdminToken.File != "" {
		errs = append(errs, fmt.Errorf("ops.admin_token: both env (%s) and file (%s) are set: expected one of them", c.AdminToken.Env, c.AdminToken.File))
	} else if tok, err := c.AdminToken.Load(); err != nil {
		errs = append(errs, err)
	} else if tok != "" && len(tok) < minTokenBytes {
		errs = append(errs, fmt.Errorf("ops.admin_token (%s): %d bytes: expected at least %d (e.g. openssl rand -hex 16)", c.AdminToken, len(tok), minTokenBytes))
	}
	if c.AdvertiseURL != "" {
		if err := checkAdvertise(c.AdvertiseURL); err != nil {
			errs = append(errs, fmt.Errorf("ops.advertise_url: %q: %w", c.AdvertiseURL, err))
		}
	}
	if c.CheckTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ops.check_timeout: %s: expected a positive duration such as 2s", c.CheckTimeout))
	}
	return errors.Join(errs...)
}

// checkListen accepts host:port with a port 0..65535; the host may be
// empty (all interfaces), a name or an address.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("expected host:port such as %s, or %s", DefaultListen, Off)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q: expected 0..65535", port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("host %q: expected a host name or an IP address", host)
	}
	return nil
}

// checkAdvertise accepts an http or https base URL with a host and no
// query or fragment.
func checkAdvertise(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("expected an http or https base URL such as http://10.0.0.5:9464")
	}
	if h := u.Hostname(); isWildcard(h) {
		return fmt.Errorf("host %q: expected an address other instances can reach, not a wildcard", h)
	}
	return nil
}

// Advertise returns the admin API base URL to advertise to the other
// instances, for a server bound to bound (host:port; the configured
// listen address when "", which cannot name port 0's choice): AdvertiseURL
// when set, else "http://" + bound unless its host is a wildcard; "" when
// there is none.
func (c *Config) Advertise(bound string) string {
	if c.AdvertiseURL != "" {
		return strings.TrimRight(c.AdvertiseURL, "/")
	}
	if !c.Enabled() {
		return ""
	}
	if bound == "" {
		bound = c.Listen
	}
	host, _, err := net.SplitHostPort(bound)
	if err != nil || isWildcard(host) {
		return ""
	}
	return "http://" + bound
}

func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// isLoopback reports whether addr listens on loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// randomToken returns 32 random bytes, URL-safe base64.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
