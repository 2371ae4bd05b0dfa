package prices

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// SyncConfig configures price sync: where price lists come from, how often
// they are fetched, and who hears about changes. It is the `prices` section
// of tariff's configuration (inlined there).
type SyncConfig struct {
	// Sources are the price lists to sync from, in order of precedence:
	// file paths or http(s) URLs, each a LiteLLM price map or an OpenRouter
	// model list (detected from the content). When two lists name the same
	// entry, the earlier source's entry wins. Default: none, so nothing
	// syncs and prices come from prices.file or the bundled map. Example:
	// https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json
	Sources []string `yaml:"sources"`
	// SyncInterval is how often `tariff run` syncs. Default 1h. Only used
	// when Sources is not empty.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// FetchTimeout bounds one fetch of one URL. Default 30s.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// MaxListBytes refuses a price list larger than this. Default 64 MiB.
	MaxListBytes int64 `yaml:"max_list_bytes"`
	// MaxRemovedPercent refuses a sync that would remove more than this
	// share of the models in force (a truncated or broken upstream list
	// would otherwise make every event of those models unpriced);
	// `tariff prices sync --force` overrides. Default 25.
	MaxRemovedPercent int `yaml:"max_removed_percent"`
	// ChangesTopic receives one JSON event per price change, keyed by the
	// model. Default "tariff.prices.changes". Needs kafka.brokers.
	ChangesTopic string `yaml:"changes_topic"`
	// Webhooks receive each new price version with its changes as one
	// signed JSON POST.
	Webhooks []WebhookConfig `yaml:"webhooks"`
	// Rollout is the policy of the default rate card `tariff setup`
	// creates: "all-customers" (a price change or card edit applies to
	// everyone from its effective time) or "new-customers-only" (customers
	// keep the prices and markup they joined with). Default all-customers.
	Rollout string `yaml:"rollout"`
}

// WebhookConfig is one webhook receiver.
type WebhookConfig struct {
	// URL receives a POST per new price version. Required.
	URL string `yaml:"url"`
	// Secret is the HMAC-SHA256 key that signs each delivery. Required,
	// either here or, better, through SecretEnv.
	Secret string `yaml:"secret"`
	// SecretEnv names an environment variable holding the secret.
	SecretEnv string `yaml:"secret_env"`
	// Timeout bounds one attempt. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts bounds the attempts of one delivery (backoff 500ms
	// doubling to 30s between them); an undelivered version stays queued in
	// the state store and is retried at the next sync. Default 6.
	MaxAttempts int `yaml:"max_attempts"`
}

// Defaults.
const (
	DefaultChangesTopic = "tariff.prices.changes"
	DefaultRollout      = "all-customers"
)

// SetDefaults fills zero fields with their documented defaults.
func (c *SyncConfig) SetDefaults() {
	if c.SyncInterval == 0 {
		c.SyncInterval = time.Hour
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = 30 * time.Second
	}
	if c.MaxListBytes == 0 {
		c.MaxListBytes = 64 << 20
	}
	if c.MaxRemovedPercent == 0 {
		c.MaxRemovedPercent = 25
	}
	if c.ChangesTopic == "" {
		c.ChangesTopic = DefaultChangesTopic
	}
	if c.Rollout == "" {
		c.Rollout = DefaultRollout
	}
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		if w.Timeout == 0 {
			w.Timeout = 10 * time.Second
		}
		if w.MaxAttempts == 0 {
			w.MaxAttempts = 6
		}
	}
}

// Validate names every bad field, with the prefix of the section.
func (c *SyncConfig) Validate() error {
	var errs []error
	for i, s := range c.Sources {
		if err := checkSource(s); err != nil {
			errs = append(errs, fmt.Errorf("prices.sources[%d]: %w", i, err))
		}
	}
	if c.SyncInterval < time.Minute {
		errs = append(errs, fmt.Errorf("prices.sync_interval: %s: expected at least 1m", c.SyncInterval))
	}
	if c.FetchTimeout <= 0 {
		errs = append(errs, fmt.Errorf("prices.fetch_timeout: %s: expected a positive duration such as 30s", c.FetchTimeout))
	}
	if c.MaxListBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("prices.max_list_bytes: %d: expected at least 1024", c.MaxListBytes))
	}
	if c.MaxRemovedPercent < 0 || c.MaxRemovedPercent > 100 {
		errs = append(errs, fmt.Errorf("prices.max_removed_percent: %d: expected 0..100", c.MaxRemovedPercent))
	}
	if strings.TrimSpace(c.ChangesTopic) == "" || strings.ContainsAny(c.ChangesTopic, " /\\") {
		errs = append(errs, fmt.Errorf("prices.changes_topic: %q: expected a Kafka topic name", c.ChangesTopic))
	}
	if _, err := ParseRollout(c.Rollout); err != nil {
		errs = append(errs, fmt.Errorf("prices.rollout: %w", err))
	}
	for i, w := range c.Webhooks {
		field := fmt.Sprintf("prices.webhooks[%d]", i)
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.url: %q: expected an http or https URL", field, w.URL))
		}
		if _, err := w.secret(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		if w.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("%s.timeout: %s: expected a positive duration", field, w.Timeout))
		}
		if w.MaxAttempts < 1 {
			errs = append(errs, fmt.Errorf("%s.max_attempts: %d: expected at least 1", field, w.MaxAttempts))
		}
	}
	return errors.Join(errs...)
}

func (w *WebhookConfig) secret() ([]byte, error) {
	if w.SecretEnv != "" {
		v := os.Getenv(w.SecretEnv)
		if v == "" {
			return nil, fmt.Errorf("secret_env: environment variable %s is empty or unset; it must hold the signing secret", w.SecretEnv)
		}
		return []byte(v), nil
	}
	if w.Secret == "" {
		return nil, errors.New("secret: required (the HMAC-SHA256 signing key); set secret_env to the name of an environment variable holding it")
	}
	return []byte(w.Secret), nil
}

// isURL reports whether a source is fetched over HTTP.
func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

func checkSource(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New(`"": expected a file path or an http(s) URL`)
	}
	if isURL(s) {
		if u, err := url.Parse(s); err != nil || u.Host == "" {
			return fmt.Errorf("%q: not a valid URL", s)
		}
		return nil
	}
	if strings.Contains(s, "://") {
		return fmt.Errorf("%q: only http and https URLs can be fetched", s)
	}
	return nil
}
