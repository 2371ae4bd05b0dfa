package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tariff-dev/tariff/sources"
	"github.com/tariff-dev/tariff/sources/secret"
)

// Defaults of Config and its parts.
const (
	DefaultListen                = "127.0.0.1:8089"
	DefaultTopic                 = "tariff.usage.gateway"
	DefaultPublishTimeout        = 3 * time.Second
	DefaultMaxMessageBytes       = 1 << 20
	DefaultMaxBodyBytes          = 32 << 20
	DefaultMaxResponseBytes      = 64 << 20
	DefaultReadTimeout           = 60 * time.Second
	DefaultUpstreamHeaderTimeout = 10 * time.Minute
	DefaultShutdownTimeout       = 60 * time.Second
	DefaultKeysFile              = "./tariff-data/gateway-keys"
	DefaultKeysReloadInterval    = 10 * time.Second
	DefaultCustomerHeader        = "X-Tariff-Customer"
	DefaultEntitlementTimeout    = 250 * time.Millisecond
	DefaultSpoolDir              = "./tariff-data/gateway-spool"
	DefaultQueueSize             = 10000
	DefaultBatchSize             = 500
	DefaultRetryMax              = 10 * time.Second
	DefaultAnthropicVersion      = "2023-06-01"

	// OnError policies of the entitlement check.
	OnErrorAllow = "allow"
	OnErrorDeny  = "deny"

	minSecretBytes           = 16
	defaultReadHeaderTimeout = 10 * time.Second
	envListen                = "TARIFF_GATEWAY_LISTEN"
	envBrokers               = "TARIFF_KAFKA_BROKERS"
	envTopic                 = "TARIFF_GATEWAY_TOPIC"
	envSpoolDir              = "TARIFF_GATEWAY_SPOOL_DIR"
	envKeysFile              = "TARIFF_GATEWAY_KEYS_FILE"
)

// Upstream kinds.
const (
	KindOpenAI           = "openai"
	KindAnthropic        = "anthropic"
	KindOpenRouter       = "openrouter"
	KindOpenAICompatible = "openai_compatible"
)

// Config configures the AI gateway: the HTTP server callers send LLM
// requests to, the upstreams it forwards them to, how callers are
// identified and entitled, and where usage goes.
type Config struct {
	// Listen is the address the HTTP server listens on. Default
	// "127.0.0.1:8089" (loopback: put a TLS-terminating proxy in front, or
	// set tls_cert_file and tls_key_file).
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile, when both set, make the server speak
	// HTTPS. Default: plain HTTP. Keys cross the wire in every request.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// Brokers are the Kafka bootstrap addresses. Required.
	Brokers []string `yaml:"brokers"`
	// Topic receives one gateway usage event per response, keyed by
	// customer id. It must exist, co-partitioned with the other input
	// topics. Default "tariff.usage.gateway".
	Topic string `yaml:"topic"`
	// PublishTimeout bounds one attempt to publish a batch of events; when
	// it fails the events go to the spool. Default 3s.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// MaxMessageBytes is the largest Kafka message the gateway publishes
	// (events are ~1 KB; a larger one is parked in the spool, see
	// README). Default 1048576.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxBodyBytes is the largest request body accepted; a larger one is
	// answered 413. Default 33554432 (32 MiB: prompts with inline images).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxResponseBytes is the largest non-streaming upstream response held
	// to read its usage; a larger one is passed through unbilled and
	// logged as an error. Default 67108864 (64 MiB).
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// ReadTimeout bounds reading one whole request, body included.
	// Default 60s. (There is no write timeout: streams last as long as the
	// model generates.)
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// UpstreamHeaderTimeout bounds the wait for an upstream's response
	// headers (a non-streaming reasoning request answers only when done).
	// Default 10m.
	UpstreamHeaderTimeout time.Duration `yaml:"upstream_header_timeout"`
	// ShutdownTimeout is how long a graceful stop waits for in-flight
	// requests, streams included. Default 60s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MetricsListen, when set, serves GET /stats (JSON counters and
	// histograms) on a separate address. Default: off.
	MetricsListen string `yaml:"metrics_listen"`
	// Keys is the file of hashed per-customer gateway keys.
	Keys KeysConfig `yaml:"keys"`
	// Trusted, when set, lets the seller's backend name the customer in a
	// header, authenticated by a shared secret. Default: off.
	Trusted *TrustedConfig `yaml:"trusted_header"`
	// Entitlement is the check made before forwarding. Default: none
	// (every identified customer is allowed).
	Entitlement EntitlementConfig `yaml:"entitlement"`
	// Spool keeps events Kafka did not take.
	Spool SpoolConfig `yaml:"spool"`
	// Upstreams are the providers requests are forwarded to. At least one.
	Upstreams []Upstream `yaml:"upstreams"`
	// Routes map models to upstreams: exact names first, then prefixes
	// (longest first), then DefaultUpstream. A route whose upstream does
	// not speak the caller's API is passed over.
	Routes []Route `yaml:"routes"`
	// DefaultUpstream serves models no route names. Default: none (an
	// unrouted model is answered 404).
	DefaultUpstream string `yaml:"default_upstream"`
}

// KeysConfig says where the hashed gateway keys are.
type KeysConfig struct {
	// File holds one line per key: id, SHA-256 of the key, customer,
	// creation time (never a key itself). Written by `tariff gateway keys
	// add`; re-read when it changes. Default "./tariff-data/gateway-keys".
	// A missing file means no keys yet.
	File string `yaml:"file"`
	// ReloadInterval is how often the file is checked for changes.
	// Default 10s.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// TrustedConfig enables the trusted header: a request whose key is the
// shared secret is billed to the customer its CustomerHeader names. Only
// the seller's backend knows the secret; an end user who sets the header
// with a customer key of their own is billed to their own customer, since
// the header is read only with the secret.
type TrustedConfig struct {
	// Secret is the shared secret the seller's backend sends as its API
	// key. Required, at least 16 bytes.
	Secret Secret `yaml:"secret"`
	// CustomerHeader names the customer. Default "X-Tariff-Customer".
	CustomerHeader string `yaml:"customer_header"`
}

// EntitlementConfig configures the check made before each request.
type EntitlementConfig struct {
	// URL is the entitlement service's base URL; the gateway calls
	// GET {url}/v1/customers/{id}/entitlement. Default: empty, which
	// allows every identified customer (no check at all).
	URL string `yaml:"url"`
	// Token is sent as "Authorization: Bearer <token>". Required with URL.
	Token Secret `yaml:"token"`
	// Timeout bounds one check. Default 250ms.
	Timeout time.Duration `yaml:"timeout"`
	// OnError is what happens when the service does not answer in time or
	// answers something other than a decision: "allow" (fail open: the
	// request goes through and its usage is billed as always) or "deny"
	// (fail closed: 503). Default "allow".
	OnError string `yaml:"on_error"`
}

// SpoolConfig configures the local durable spool.
type SpoolConfig struct {
	// Dir is the Badger directory. Default "./tariff-data/gateway-spool".
	// One gateway process per directory.
	Dir string `yaml:"dir"`
	// QueueSize is how many events wait in memory for the publisher; when
	// full, a request spools its event itself. Default 10000.
	QueueSize int `yaml:"queue_size"`
	// BatchSize is the most events published in one Kafka request.
	// Default 500.
	BatchSize int `yaml:"batch_size"`
	// RetryMax caps the backoff between attempts to drain the spool while
	// Kafka is down. Default 10s.
	RetryMax time.Duration `yaml:"retry_max"`
	// SyncWrites fsyncs each spool write. Default true: the spool exists
	// for the case where Kafka is down, and an event that is only in the
	// page cache would be lost with the machine.
	SyncWrites *bool `yaml:"sync_writes"`
}

// Upstream is one provider endpoint.
type Upstream struct {
	// Name names the upstream in routes, logs and event dimensions.
	// Required, unique; letters, digits, '.', '_' and '-'.
	Name string `yaml:"name"`
	// Kind is openai, anthropic, openrouter or openai_compatible. Required.
	Kind string `yaml:"kind"`
	// BaseURL is the API base the API path is appended to
	// ("/chat/completions", "/responses", "/messages"). Default per kind:
	// https://api.openai.com/v1, https://api.anthropic.com/v1,
	// https://openrouter.ai/api/v1; required for openai_compatible.
	BaseURL string `yaml:"base_url"`
	// Key is the upstream API key, held by the gateway and never logged.
	// Required except for openai_compatible (a local server may need none).
	// Chat Completions and Responses send it as "Authorization: Bearer",
	// Messages as "x-api-key".
	Key Secret `yaml:"key"`
	// Provider is the provider name written into usage events. Default:
	// the kind (openai, anthropic, openrouter), or the upstream's name for
	// openai_compatible.
	Provider string `yaml:"provider"`
	// APIs lists the caller APIs this upstream serves: chat_completions,
	// responses, messages. No request is translated between APIs. Default:
	// openai and openrouter [chat_completions, responses]; anthropic
	// [messages]; openai_compatible [chat_completions].
	APIs []string `yaml:"apis"`
	// Headers are extra, non-secret headers sent upstream with every
	// request (e.g. OpenRouter's HTTP-Referer and X-Title). Default none.
	Headers map[string]string `yaml:"headers"`
	// UniqueResponseIDs says whether the upstream's response ids are
	// unique; they then serve as the events' idempotency keys. Default
	// true, except for openai_compatible (some servers reuse ids, which
	// would make distinct usage look like duplicates): a UUID instead.
	UniqueResponseIDs *bool `yaml:"unique_response_ids"`
}

// Route sends a model, by exact name or by prefix, to an upstream.
type Route struct {
	// Model is an exact model name. Exactly one of Model and Prefix.
	Model string `yaml:"model"`
	// Prefix matches every model name starting with it.
	Prefix string `yaml:"prefix"`
	// Upstream names the upstream. Required.
	Upstream string `yaml:"upstream"`
}

// Secret says where a secret is read from: an environment variable or a
// file, never the configuration itself.
type Secret = secret.Secret

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.UpstreamHeaderTimeout == 0 {
		c.UpstreamHeaderTimeout = DefaultUpstreamHeaderTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Keys.File == "" {
		c.Keys.File = DefaultKeysFile
	}
	if c.Keys.ReloadInterval == 0 {
		c.Keys.ReloadInterval = DefaultKeysReloadInterval
	}
	if c.Trusted != nil && c.Trusted.CustomerHeader == "" {
		c.Trusted.CustomerHeader = DefaultCustomerHeader
	}
	if c.Entitlement.Timeout == 0 {
		c.Entitlement.Timeout = DefaultEntitlementTimeout
	}
	if c.Entitlement.OnError == "" {
		c.Entitlement.OnError = OnErrorAllow
	}
	s := &c.Spool
	if s.Dir == "" {
		s.Dir = DefaultSpoolDir
	}
	if s.QueueSize == 0 {
		s.QueueSize = DefaultQueueSize
	}
	if s.BatchSize == 0 {
		s.BatchSize = DefaultBatchSize
	}
	if s.RetryMax == 0 {
		s.RetryMax = DefaultRetryMax
	}
	if s.SyncWrites == nil {
		t := true
		s.SyncWrites = &t
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if u.BaseURL == "" {
			u.BaseURL = defaultBaseURL[u.Kind]
		}
		if u.Provider == "" {
			u.Provider = u.Kind
			if u.Kind == KindOpenAICompatible {
				u.Provider = u.Name
			}
		}
		if u.APIs == nil {
			u.APIs = defaultAPIs[u.Kind]
		}
		if u.UniqueResponseIDs == nil {
			v := u.Kind != KindOpenAICompatible
			u.UniqueResponseIDs = &v
		}
	}
}

var defaultBaseURL = map[string]string{
	KindOpenAI:     "https://api.openai.com/v1",
	KindAnthropic:  "https://api.anthropic.com/v1",
	KindOpenRouter: "https://openrouter.ai/api/v1",
}

var defaultAPIs = map[string][]string{
	KindOpenAI:           {apiNames[apiChat], apiNames[apiResponses]},
	KindOpenRouter:       {apiNames[apiChat], apiNames[apiResponses]},
	KindAnthropic:        {apiNames[apiMessages]},
	KindOpenAICompatible: {apiNames[apiChat]},
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate reports every bad field at once, each named with what was
// expected. It does not read secrets (New does).
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Listen == "" {
		add("gateway.listen: empty: expected host:port, e.g. %s", DefaultListen)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add("gateway.tls_cert_file, gateway.tls_key_file: expected both or neither")
	}
	if len(c.Brokers) == 0 {
		add("gateway.brokers: expected at least one Kafka bootstrap address")
	}
	for i, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			add("gateway.brokers[%d]: empty: expected host:port", i)
		}
	}
	if c.Topic == "" {
		add("gateway.topic: empty: expected the Kafka topic usage events go to")
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			add("gateway.%s: %s: expected a positive duration", name, d)
		}
	}
	positive("publish_timeout", c.PublishTimeout)
	positive("read_timeout", c.ReadTimeout)
	positive("upstream_header_timeout", c.UpstreamHeaderTimeout)
	positive("shutdown_timeout", c.ShutdownTimeout)
	positive("keys.reload_interval", c.Keys.ReloadInterval)
	positive("spool.retry_max", c.Spool.RetryMax)
	if c.MaxMessageBytes < 4096 {
		add("gateway.max_message_bytes: %d: expected at least 4096 bytes", c.MaxMessageBytes)
	}
	if c.MaxBodyBytes <= 0 {
		add("gateway.max_body_bytes: %d: expected a positive size in bytes", c.MaxBodyBytes)
	}
	if c.MaxResponseBytes <= 0 {
		add("gateway.max_response_bytes: %d: expected a positive size in bytes", c.MaxResponseBytes)
	}
	if c.Keys.File == "" {
		add("gateway.keys.file: empty: expected the path of the key file")
	}
	if t := c.Trusted; t != nil {
		errs = append(errs, t.Secret.Validate("gateway.trusted_header.secret"))
		if t.CustomerHeader == "" || strings.ContainsAny(t.CustomerHeader, " :\t\r\n") {
			add("gateway.trusted_header.customer_header: %q: expected an HTTP header name", t.CustomerHeader)
		}
		switch strings.ToLower(t.CustomerHeader) {
		case "authorization", "x-api-key":
			add("gateway.trusted_header.customer_header: %q: expected a header other than the credential headers", t.CustomerHeader)
		}
	}
	e := &c.Entitlement
	if e.URL != "" {
		if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("gateway.entitlement.url: %q: expected an http or https base URL", e.URL)
		}
		errs = append(errs, e.Token.Validate("gateway.entitlement.token"))
	} else if e.Token.IsSet() {
		add("gateway.entitlement.token: set without entitlement.url: expected both or neither")
	}
	positive("entitlement.timeout", e.Timeout)
	switch e.OnError {
	case OnErrorAllow, OnErrorDeny:
	default:
		add("gateway.entitlement.on_error: %q: expected allow or deny", e.OnError)
	}
	if c.Spool.Dir == "" {
		add("gateway.spool.dir: empty: expected a directory")
	}
	if c.Spool.QueueSize < 1 {
		add("gateway.spool.queue_size: %d: expected at least 1", c.Spool.QueueSize)
	}
	if c.Spool.BatchSize < 1 || c.Spool.BatchSize > 10000 {
		add("gateway.spool.batch_size: %d: expected 1..10000", c.Spool.BatchSize)
	}

	if len(c.Upstreams) == 0 {
		add("gateway.upstreams: expected at least one upstream")
	}
	names := map[string]int{}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		f := fmt.Sprintf("gateway.upstreams[%d]", i)
		switch {
		case u.Name == "":
			add("%s.name: empty: expected an upstream name", f)
		case !nameRE.MatchString(u.Name):
			add("%s.name: %q: expected letters, digits, '.', '_' or '-'", f, u.Name)
		default:
			if j, dup := names[u.Name]; dup {
				add("%s.name: %q: already used by upstreams[%d]", f, u.Name, j)
			}
			names[u.Name] = i
		}
		switch u.Kind {
		case KindOpenAI, KindAnthropic, KindOpenRouter, KindOpenAICompatible:
		default:
			add("%s.kind: %q: expected openai, anthropic, openrouter or openai_compatible", f, u.Kind)
		}
		if pu, err := url.Parse(u.BaseURL); u.BaseURL == "" || err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.RawQuery != "" {
			add("%s.base_url: %q: expected an http or https URL without a query, e.g. https://api.openai.com/v1", f, u.BaseURL)
		}
		if u.Key.IsSet() || u.Kind != KindOpenAICompatible {
			errs = append(errs, u.Key.Validate(f+".key"))
		}
		if len(u.APIs) == 0 {
			add("%s.apis: empty: expected one or more of chat_completions, responses, messages", f)
		}
		for j, a := range u.APIs {
			if _, ok := parseAPI(a); !ok {
				add("%s.apis[%d]: %q: expected chat_completions, responses or messages", f, j, a)
			}
		}
		for h := range u.Headers {
			switch strings.ToLower(h) {
			case "authorization", "x-api-key", "host", "content-length", "content-type":
				add("%s.headers: %q: expected a header the gateway does not set itself", f, h)
			}
			if h == "" || strings.ContainsAny(h, " :\t\r\n") {
				add("%s.headers: %q: expected an HTTP header name", f, h)
			}
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		f := fmt.Sprintf("gateway.routes[%d]", i)
		if (r.Model == "") == (r.Prefix == "") {
			add("%s: expected exactly one of model and prefix", f)
		}
		if _, ok := names[r.Upstream]; !ok {
			add("%s.upstream: %q: expected the name of one of gateway.upstreams", f, r.Upstream)
		}
	}
	if c.DefaultUpstream != "" {
		if _, ok := names[c.DefaultUpstream]; !ok {
			add("gateway.default_upstream: %q: expected the name of one of gateway.upstreams", c.DefaultUpstream)
		}
	}
	return errors.Join(errs...)
}

// File is the gateway's configuration file: a YAML document with a
// gateway section (gateway.example.yaml in this folder).
type File struct {
	Gateway Config `yaml:"gateway"`
}

// LoadFile reads a gateway configuration file and applies the environment
// overrides TARIFF_GATEWAY_LISTEN, TARIFF_KAFKA_BROKERS (comma-separated),
// TARIFF_GATEWAY_TOPIC, TARIFF_GATEWAY_SPOOL_DIR and
// TARIFF_GATEWAY_KEYS_FILE. Unknown fields are errors. It neither fills
// defaults nor validates: New does both, after the caller applied its flags.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read gateway config: %w", err)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("gateway config %s: %w", path, err)
	}
	c := f.Gateway
	for _, o := range []struct {
		env string
		set func(string)
	}{
		{envListen, func(v string) { c.Listen = v }},
		{envBrokers, func(v string) { c.Brokers = sources.SplitList(v) }},
		{envTopic, func(v string) { c.Topic = v }},
		{envSpoolDir, func(v string) { c.Spool.Dir = v }},
		{envKeysFile, func(v string) { c.Keys.File = v }},
	} {
		if v, ok := os.LookupEnv(o.env); ok && v != "" {
			o.set(v)
		}
	}
	return &c, nil
}
