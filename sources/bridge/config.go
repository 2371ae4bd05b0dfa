package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sources"
	"github.com/tariff-dev/tariff/sources/secret"
)

// Defaults of Config and Endpoint.
const (
	DefaultListen            = "127.0.0.1:8088"
	DefaultPublishTimeout    = 10 * time.Second
	DefaultRetryAfter        = 30 * time.Second
	DefaultMaxMessageBytes   = 1 << 20 // kafka-go's and (near enough) Kafka's own default
	DefaultReadTimeout       = 60 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultMaxBodyBytes      = 5 << 20
	DefaultSignatureHeader   = "X-Tariff-Signature"
	DefaultTimestampHeader   = "X-Tariff-Timestamp"
	DefaultMaxSkew           = 5 * time.Minute
	minSecretBytes           = 16
	healthPath               = "/healthz"
	headerTestConnection     = "X-Test-Connection"
	envListen                = "TARIFF_BRIDGE_LISTEN"
	envBrokers               = "TARIFF_KAFKA_BROKERS"
	envTLSCert               = "TARIFF_BRIDGE_TLS_CERT_FILE"
	envTLSKey                = "TARIFF_BRIDGE_TLS_KEY_FILE"
	defaultReadHeaderTimeout = 10 * time.Second
)

// Config configures the webhook bridge: the HTTP server partners call and
// the Kafka topics it publishes to.
type Config struct {
	// Listen is the address the HTTP server listens on. Default
	// "127.0.0.1:8088" (loopback: put a TLS-terminating proxy in front, or
	// set tls_cert_file and tls_key_file and listen on a public address).
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile, when both set, make the server speak
	// HTTPS. Default: plain HTTP. Bearer tokens cross the wire in every
	// request, so never expose plain HTTP beyond a trusted network.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// Brokers are the Kafka bootstrap addresses. Required.
	Brokers []string `yaml:"brokers"`
	// PublishTimeout bounds how long a request waits for Kafka to
	// acknowledge its messages before it is answered 503. Default 10s.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// RetryAfter is what a 503 answer asks the partner to wait before
	// resending (the Retry-After header, whole seconds). Default 30s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// MaxMessageBytes is the largest Kafka message (one record plus its key
	// and headers) the bridge publishes; a larger record is refused with
	// 413. Keep it at or below the topics' max.message.bytes. Default
	// 1048576 (1 MiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// ReadTimeout bounds reading one whole request, body included. Default 60s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// ShutdownTimeout is how long a graceful stop waits for in-flight
	// requests to finish. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Endpoints are the partner endpoints, one per path. At least one.
	Endpoints []Endpoint `yaml:"endpoints"`
}

// Endpoint is one partner's URL path, with how it authenticates and what
// its bodies hold.
type Endpoint struct {
	// Name names the partner in logs and in the tariff.bridge.partner
	// header of every message it publishes. Required, unique; letters,
	// digits, '.', '_' and '-'.
	Name string `yaml:"name"`
	// Path is the URL path the partner posts to, e.g. "/v1/ingest/litellm".
	// Required, unique, starts with '/'.
	Path string `yaml:"path"`
	// Format is the body format: litellm, openrouter, meter or gateway.
	// Required. It selects the schemas decoder that validates each record.
	Format string `yaml:"format"`
	// Topic is the Kafka topic the records go to. Required. It must exist
	// (the bridge does not create topics: a topic created on the fly would
	// get the broker's default partition count and break co-partitioning).
	Topic string `yaml:"topic"`
	// Token is the bearer token the partner sends as
	// "Authorization: Bearer <token>". Required, at least 16 bytes.
	Token Secret `yaml:"token"`
	// HMAC, when set, also requires a signature over timestamp and body.
	// Default: none (LiteLLM and OpenRouter cannot sign).
	HMAC *HMACConfig `yaml:"hmac"`
	// MaxBodyBytes is the largest request body accepted (after gzip
	// decompression too); a larger one is answered 413. Default 5242880
	// (5 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// CustomerFields lists, in order of preference, where a record keeps
	// the customer id: LiteLLMCustomerFields, OpenRouterCustomerFields or
	// MeterCustomerFields of schemas.DecodeOptions, depending on Format.
	// Not allowed for gateway (its customer_id is fixed). Default: the
	// decoder's default. The pipeline must decode the topic with the same
	// fields, or messages are keyed by a different id than the one billed.
	CustomerFields []string `yaml:"customer_fields"`
}

// HMACConfig requires every request to carry an HMAC-SHA256 signature:
// hex(HMAC-SHA256(secret, timestamp + "." + body)), with timestamp the
// decimal Unix time in seconds sent in TimestampHeader.
type HMACConfig struct {
	// Secret is the shared signing key. Required, at least 16 bytes.
	Secret Secret `yaml:"secret"`
	// SignatureHeader carries the hex signature, optionally prefixed
	// "sha256=". Default "X-Tariff-Signature".
	SignatureHeader string `yaml:"signature_header"`
	// TimestampHeader carries the Unix time in seconds. Default
	// "X-Tariff-Timestamp".
	TimestampHeader string `yaml:"timestamp_header"`
	// MaxSkew is how far the timestamp may be from the server's clock, in
	// the past or the future. Default 5m.
	MaxSkew time.Duration `yaml:"max_skew"`
}

// Secret says where a secret is read from: an environment variable or a
// file, never the configuration itself.
type Secret = secret.Secret

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		if e.MaxBodyBytes == 0 {
			e.MaxBodyBytes = DefaultMaxBodyBytes
		}
		if h := e.HMAC; h != nil {
			if h.SignatureHeader == "" {
				h.SignatureHeader = DefaultSignatureHeader
			}
			if h.TimestampHeader == "" {
				h.TimestampHeader = DefaultTimestampHeader
			}
			if h.MaxSkew == 0 {
				h.MaxSkew = DefaultMaxSkew
			}
		}
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate reports every bad field at once, each named with what was
// expected. It does not read secrets (New does).
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Listen == "" {
		add("bridge.listen: empty: expected host:port, e.g. %s", DefaultListen)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add("bridge.tls_cert_file, bridge.tls_key_file: expected both or neither")
	}
	if len(c.Brokers) == 0 {
		add("bridge.brokers: expected at least one Kafka bootstrap address")
	}
	for i, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			add("bridge.brokers[%d]: empty: expected host:port", i)
		}
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			add("bridge.%s: %s: expected a positive duration", name, d)
		}
	}
	positive("publish_timeout", c.PublishTimeout)
	positive("read_timeout", c.ReadTimeout)
	positive("shutdown_timeout", c.ShutdownTimeout)
	if c.ShutdownTimeout > 0 && c.ShutdownTimeout <= c.PublishTimeout {
		add("bridge.shutdown_timeout: %s: expected more than publish_timeout (%s), so that requests waiting for Kafka can finish during a graceful stop", c.ShutdownTimeout, c.PublishTimeout)
	}
	if c.RetryAfter < time.Second {
		add("bridge.retry_after: %s: expected at least 1s (Retry-After is in whole seconds)", c.RetryAfter)
	}
	if c.MaxMessageBytes < 1024 {
		add("bridge.max_message_bytes: %d: expected at least 1024 bytes", c.MaxMessageBytes)
	}
	if len(c.Endpoints) == 0 {
		add("bridge.endpoints: expected at least one partner endpoint")
	}
	names, paths := map[string]int{}, map[string]int{}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		f := fmt.Sprintf("bridge.endpoints[%d]", i)
		switch {
		case e.Name == "":
			add("%s.name: empty: expected a partner name", f)
		case !nameRE.MatchString(e.Name):
			add("%s.name: %q: expected letters, digits, '.', '_' or '-'", f, e.Name)
		default:
			if j, dup := names[e.Name]; dup {
				add("%s.name: %q: already used by endpoints[%d]", f, e.Name, j)
			}
			names[e.Name] = i
		}
		switch {
		case !strings.HasPrefix(e.Path, "/"):
			add("%s.path: %q: expected a URL path starting with '/'", f, e.Path)
		case e.Path == healthPath || e.Path == "/":
			add("%s.path: %q: reserved (health check and not-found answers)", f, e.Path)
		case strings.ContainsAny(e.Path, " {}?#%") || strings.Contains(e.Path, "//") || (len(e.Path) > 1 && strings.HasSuffix(e.Path, "/")):
			add("%s.path: %q: expected a plain path without a trailing '/' (no spaces, patterns, escapes, query or fragment)", f, e.Path)
		default:
			if j, dup := paths[e.Path]; dup {
				add("%s.path: %q: already used by endpoints[%d]", f, e.Path, j)
			}
			paths[e.Path] = i
		}
		switch e.Format {
		case schemas.FormatLiteLLM, schemas.FormatOpenRouter, schemas.FormatMeter, schemas.FormatGateway:
		default:
			add("%s.format: %q: expected litellm, openrouter, meter or gateway", f, e.Format)
		}
		if e.Topic == "" {
			add("%s.topic: empty: expected the Kafka topic to publish to", f)
		}
		errs = append(errs, e.Token.Validate(f+".token"))
		if e.MaxBodyBytes <= 0 {
			add("%s.max_body_bytes: %d: expected a positive size in bytes", f, e.MaxBodyBytes)
		}
		if e.CustomerFields != nil {
			if e.Format == schemas.FormatGateway {
				add("%s.customer_fields: not allowed for format gateway (its customer is always customer_id)", f)
			} else if err := e.decodeOptions().Validate(); err != nil {
				add("%s.customer_fields: %w", f, err)
			}
		}
		if h := e.HMAC; h != nil {
			errs = append(errs, h.Secret.Validate(f+".hmac.secret"))
			for _, hdr := range []struct{ name, v string }{{"signature_header", h.SignatureHeader}, {"timestamp_header", h.TimestampHeader}} {
				if hdr.v == "" || strings.ContainsAny(hdr.v, " :\t\r\n") {
					add("%s.hmac.%s: %q: expected an HTTP header name", f, hdr.name, hdr.v)
				}
			}
			if strings.EqualFold(h.SignatureHeader, h.TimestampHeader) {
				add("%s.hmac: signature_header and timestamp_header are both %q: expected two headers", f, h.SignatureHeader)
			}
			if h.MaxSkew <= 0 {
				add("%s.hmac.max_skew: %s: expected a positive duration", f, h.MaxSkew)
			}
		}
	}
	return errors.Join(errs...)
}

// decodeOptions maps CustomerFields onto the decoder option of the format.
func (e *Endpoint) decodeOptions() schemas.DecodeOptions {
	var o schemas.DecodeOptions
	switch e.Format {
	case schemas.FormatLiteLLM:
		o.LiteLLMCustomerFields = e.CustomerFields
	case schemas.FormatOpenRouter:
		o.OpenRouterCustomerFields = e.CustomerFields
	case schemas.FormatMeter:
		o.MeterCustomerFields = e.CustomerFields
	}
	return o
}

// File is the bridge's configuration file: a YAML document with a bridge
// section (config.example.yaml in this folder's README).
type File struct {
	Bridge Config `yaml:"bridge"`
}

// LoadFile reads a bridge configuration file and applies the environment
// overrides TARIFF_BRIDGE_LISTEN, TARIFF_KAFKA_BROKERS (comma-separated),
// TARIFF_BRIDGE_TLS_CERT_FILE and TARIFF_BRIDGE_TLS_KEY_FILE. Unknown
// fields are errors, so a misspelt setting is never silently ignored. It
// neither fills defaults nor validates: New does both, after the caller
// has applied its flags.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bridge config: %w", err)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("bridge config %s: %w", path, err)
	}
	c := f.Bridge
	if v, ok := os.LookupEnv(envListen); ok && v != "" {
		c.Listen = v
	}
	if v, ok := os.LookupEnv(envBrokers); ok && v != "" {
		c.Brokers = sources.SplitList(v)
	}
	if v, ok := os.LookupEnv(envTLSCert); ok && v != "" {
		c.TLSCertFile = v
	}
	if v, ok := os.LookupEnv(envTLSKey); ok && v != "" {
		c.TLSKeyFile = v
	}
	return &c, nil
}
