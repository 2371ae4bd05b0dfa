package alertwebhooks

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/tariff-dev/tariff/sources/secret"
)

// Config is the `webhooks` section of tariff's configuration.
type Config struct {
	// Alerts are the endpoints every balance alert is POSTed to. Empty (the
	// default): alerts go to the Kafka alerts topic only.
	Alerts []Endpoint `yaml:"alerts"`
	// RetryMin and RetryMax bound the wait between attempts: RetryMin
	// doubling per failed attempt up to RetryMax, minus a random part of
	// up to half (jitter), raised to a 429's or 503's Retry-After up to
	// RetryMax. Defaults 500ms and 30s.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// MaxAttempts bounds the attempts per alert and endpoint; after the
	// last one the delivery counts as failed and the alert moves on.
	// Default 10.
	MaxAttempts int `yaml:"max_attempts"`
	// Timeout bounds one attempt, from connecting to the end of the
	// response. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// DeliveriesTopic receives one JSON record per attempt (Delivery),
	// keyed by the alert's idempotency key. Default
	// "tariff.webhooks.deliveries".
	DeliveriesTopic string `yaml:"deliveries_topic"`
	// RecentDeliveries is how many of the latest attempts are kept in
	// memory for the admin API. Default 1000.
	RecentDeliveries int `yaml:"recent_deliveries"`
}

// Endpoint is one receiver of balance alerts.
type Endpoint struct {
	// URL receives a POST per alert. Required: http or https.
	URL string `yaml:"url"`
	// Secret is the HMAC-SHA256 key that signs each delivery, from an
	// environment variable or a file; at least 16 bytes. Required.
	Secret secret.Secret `yaml:"secret"`
}

var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// Defaults.
const (
	DefaultDeliveriesTopic = "tariff.webhooks.deliveries"
	DefaultRetryMin        = 500 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultMaxAttempts     = 10
	DefaultTimeout         = 10 * time.Second
	DefaultRecent          = 1000

	// MinSecretBytes is the shortest signing secret accepted.
	MinSecretBytes = 16
)

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.DeliveriesTopic == "" {
		c.DeliveriesTopic = DefaultDeliveriesTopic
	}
	if c.RecentDeliveries == 0 {
		c.RecentDeliveries = DefaultRecent
	}
}

// Validate names every bad field. It reads each endpoint's secret to check
// its length; an error says where a secret comes from and how long it is,
// never what it is.
func (c *Config) Validate() error {
	_, err := c.secrets()
	return err
}

// secrets validates c and returns each endpoint's secret.
func (c *Config) secrets() ([][]byte, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.RetryMin <= 0 {
		add("webhooks.retry_min: %s: expected a positive duration such as 500ms", c.RetryMin)
	}
	if c.RetryMax < c.RetryMin {
		add("webhooks.retry_max: %s: expected at least retry_min (%s)", c.RetryMax, c.RetryMin)
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		add("webhooks.max_attempts: %d: expected 1..100", c.MaxAttempts)
	}
	if c.Timeout <= 0 {
		add("webhooks.timeout: %s: expected a positive duration such as 10s", c.Timeout)
	}
	if t := c.DeliveriesTopic; !topicName.MatchString(t) || len(t) > 249 || t == "." || t == ".." {
		add("webhooks.deliveries_topic: %q: expected a Kafka topic name: at most 249 letters, digits, '.', '_' and '-'", t)
	}
	if c.RecentDeliveries < 1 || c.RecentDeliveries > 1_000_000 {
		add("webhooks.recent_deliveries: %d: expected 1..1000000", c.RecentDeliveries)
	}
	secrets := make([][]byte, len(c.Alerts))
	seen := map[string]int{}
	for i, e := range c.Alerts {
		f := fmt.Sprintf("webhooks.alerts[%d]", i)
		if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("%s.url: %q: expected an http or https URL such as https://billing.example.com/hooks/alerts", f, e.URL)
		} else if j, dup := seen[e.URL]; dup {
			add("%s.url: %q is also webhooks.alerts[%d]: expected each endpoint once (it would get every alert twice)", f, e.URL, j)
		} else {
			seen[e.URL] = i
		}
		if !e.Secret.IsSet() {
			add("%s.secret: required (the HMAC-SHA256 signing key, at least %d bytes): expected env (an environment variable name) or file (a path)", f, MinSecretBytes)
			continue
		}
		if err := e.Secret.Validate(f + ".secret"); err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := e.Secret.Load(f+".secret", MinSecretBytes)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		secrets[i] = s
	}
	return secrets, errors.Join(errs...)
}

// logURL is an endpoint's URL as the delivery log and the logs show it:
// without user information and query, which may carry credentials.
func logURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	u.Fragment = ""
	return u.String()
}
