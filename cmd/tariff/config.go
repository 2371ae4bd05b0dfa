package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/alertwebhooks"
	"github.com/tariff-dev/tariff/pipeline/ops"
	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources"
)

// Config is tariff's whole configuration: one YAML file, with environment
// overrides for what differs between machines (addresses and secrets).
type Config struct {
	Kafka      KafkaConfig            `yaml:"kafka"`
	ClickHouse ClickHouseConfig       `yaml:"clickhouse"`
	State      pipeline.StoreConfig   `yaml:"state"`
	Pipeline   pipeline.Config        `yaml:"pipeline"`
	Prices     PricesConfig           `yaml:"prices"`
	Embedded   sources.EmbeddedConfig `yaml:"embedded"`
	Output     OutputConfig           `yaml:"output"`
	Log        LogConfig              `yaml:"log"`
	// Ops is the HTTP server for /metrics, /healthz, /readyz and the
	// dashboard; each field and its default: pipeline/ops.Config.
	Ops ops.Config `yaml:"ops"`
	// Webhooks are the signed webhooks balance alerts are delivered to,
	// with retries and a delivery log; each field and its default:
	// pipeline/alertwebhooks.Config.
	Webhooks alertwebhooks.Config `yaml:"webhooks"`
	// Balances holds the plan catalog of the admin API.
	Balances BalancesConfig `yaml:"balances"`
	// MemoryLimit is a soft limit on the Go heap, in bytes: past it the
	// garbage collector works harder rather than let the process grow; 0
	// disables it. Unset, it is 85% of the memory limit of the container
	// (control group) tariff runs in, and none outside one (memlimit.go).
	// Set it well above the live heap: a limit the heap nears makes the
	// collector run all the time. The GOMEMLIMIT environment variable,
	// when set, wins.
	MemoryLimit *int64 `yaml:"memory_limit"`
}

// KafkaConfig is the consumer plus the dead-letter topic.
type KafkaConfig struct {
	sources.Config `yaml:",inline"`
	// DeadLetterTopic receives every refused message. Default "tariff.deadletter".
	DeadLetterTopic string `yaml:"dead_letter_topic"`
	// AlertsTopic receives balance alerts (zero balance, thresholds,
	// recovery), keyed by customer id. Default "tariff.alerts".
	AlertsTopic string `yaml:"alerts_topic"`
	// Decode says where partner formats keep the customer id.
	Decode DecodeConfig `yaml:"decode"`
	// ChangelogTopic keeps each partition's state so another instance can
	// take the partition over. Created with the input topics' partition
	// count. Default "<group_id>.changelog".
	ChangelogTopic string `yaml:"changelog_topic"`
}

// DecodeConfig maps partner payload fields to the customer id. Each list
// is tried in order and the first present, non-empty value wins; empty
// lists keep the decoders' documented defaults (schemas.Default*).
// Use one kind of identity per list in production: mixing an end user and
// a key alias, say, lets one tenant appear under two ids.
type DecodeConfig struct {
	// LiteLLMCustomerFields are dotted paths into the StandardLoggingPayload,
	// e.g. "end_user", "metadata.user_api_key_alias",
	// "metadata.user_api_key_team_id", "metadata.requester_metadata.<key>".
	LiteLLMCustomerFields []string `yaml:"litellm_customer_fields"`
	// OpenRouterCustomerFields name a response or generation field, or a
	// Broadcast span attribute ("user", "external_user", "user.id").
	OpenRouterCustomerFields []string `yaml:"openrouter_customer_fields"`
	// MeterCustomerFields are "customerId" or "dimensions.<key>".
	MeterCustomerFields []string `yaml:"meter_customer_fields"`
}

// Options returns the decoder options these fields select.
func (d DecodeConfig) Options() schemas.DecodeOptions {
	return schemas.DecodeOptions{
		LiteLLMCustomerFields:    d.LiteLLMCustomerFields,
		OpenRouterCustomerFields: d.OpenRouterCustomerFields,
		MeterCustomerFields:      d.MeterCustomerFields,
	}
}

// ClickHouseConfig says whether and where rated usage goes to ClickHouse.
type ClickHouseConfig struct {
	sinks.ClickHouseConfig `yaml:",inline"`
	// Enabled is "auto" (use ClickHouse when it answers at addr, else the
	// local file), "true" (required: fail when it does not answer) or
	// "false". Default "auto".
	Enabled string `yaml:"enabled"`
}

// PricesConfig says which price list rates usage.
type PricesConfig struct {
	// File is a LiteLLM price map or an OpenRouter model list. Default: the
	// LiteLLM price map bundled in the binary.
	File string `yaml:"file"`
	// Markup is the global markup in percent, e.g. "30" for 30%. Default "0".
	Markup string `yaml:"markup"`
	// Aliases maps model names as events report them to the name to price
	// them as (deployment names, house names): {"prod-claude":
	// "claude-sonnet-4-5"}. Default none.
	Aliases map[string]string `yaml:"aliases"`
	// StateTopic is the topic through which the instances of the consumer
	// group share price versions, rate cards and the default card: every
	// write goes to it first and each instance applies it, so an event is
	// rated the same whichever instance owns its partition. One partition,
	// compacted; created at start. Used only when kafka.brokers is set.
	// Default "<kafka.group_id>.prices".
	StateTopic string `yaml:"state_topic"`
	// SyncConfig: where newer prices come from and how often (sources,
	// sync_interval, fetch_timeout, max_list_bytes, max_removed_percent),
	// who hears of a change (changes_topic, webhooks) and the rollout
	// policy of the default rate card (rollout). Each field and its
	// default: pipeline/prices.SyncConfig.
	prices.SyncConfig `yaml:",inline"`
}

// OutputConfig is the local file sink.
type OutputConfig struct {
	// File receives rated events as JSON lines when ClickHouse is not used.
	// Default "./tariff-data/rated.jsonl".
	File string `yaml:"file"`
	// Console prints rated events to standard output (at most
	// console_max_per_second lines a second). Default true in the embedded
	// default, false otherwise.
	Console             *bool `yaml:"console"`
	ConsoleMaxPerSecond int   `yaml:"console_max_per_second"`
}

// LogConfig sets logging.
type LogConfig struct {
	// Level is trace, debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is "console" (human) or "json". Default console on a terminal,
	// json otherwise.
	Format string `yaml:"format"`
}

// validate checks the level and the format; level and format name the
// two settings in errors (the config fields, or the flags of commands that
// take them directly).
func (l LogConfig) validate(level, format string) error {
	var errs []error
	switch l.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("%s%q: expected trace, debug, info, warn or error", level, l.Level))
	}
	switch l.Format {
	case "", "console", "json":
	default:
		errs = append(errs, fmt.Errorf("%s%q: expected console or json", format, l.Format))
	}
	return errors.Join(errs...)
}

// Default topic names of the embedded default and the example config.
const (
	TopicGateway    = "tariff.usage.gateway"
	TopicPartner    = "tariff.usage.partner"
	TopicMeter      = "tariff.usage.meter"
	TopicDeadLetter = "tariff.deadletter"
	TopicAlerts     = "tariff.alerts"
	TopicCommands   = "tariff.commands"
)

// embedded reports whether the config asks for the in-process broker: it
// does when no brokers are configured.
func (c *Config) embedded() bool { return len(c.Kafka.Brokers) == 0 }

// SetDefaults fills every zero field with its documented default.
func (c *Config) SetDefaults() {
	if len(c.Kafka.Topics) == 0 {
		c.Kafka.Topics = map[string]string{TopicGateway: "gateway", TopicPartner: "auto", TopicMeter: "meter", TopicCommands: pipeline.FormatCommand}
	}
	if c.Kafka.DeadLetterTopic == "" {
		c.Kafka.DeadLetterTopic = TopicDeadLetter
	}
	if c.Kafka.AlertsTopic == "" {
		c.Kafka.AlertsTopic = TopicAlerts
	}
	c.Kafka.Config.SetDefaults()
	if c.Kafka.ChangelogTopic == "" {
		c.Kafka.ChangelogTopic = c.Kafka.GroupID + ".changelog"
	}
	if c.ClickHouse.Enabled == "" {
		c.ClickHouse.Enabled = "auto"
	}
	c.ClickHouse.ClickHouseConfig.SetDefaults()
	c.State.SetDefaults()
	c.Pipeline.SetDefaults()
	if c.Prices.Markup == "" {
		c.Prices.Markup = "0"
	}
	c.Prices.SyncConfig.SetDefaults()
	if c.Prices.StateTopic == "" {
		c.Prices.StateTopic = c.Kafka.GroupID + ".prices"
	}
	if c.Embedded.Port == 0 {
		c.Embedded.Port = 9092
	}
	if c.Embedded.DataDir == "" {
		c.Embedded.DataDir = "./tariff-data/broker"
	}
	if c.Output.File == "" {
		c.Output.File = "./tariff-data/rated.jsonl"
	}
	if c.Output.Console == nil {
		v := c.embedded()
		c.Output.Console = &v
	}
	if c.Output.ConsoleMaxPerSecond == 0 {
		c.Output.ConsoleMaxPerSecond = 20
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	c.Ops.SetDefaults()
	c.Webhooks.SetDefaults()
}

// Validate names every bad field with what was expected.
func (c *Config) Validate() error {
	var errs []error
	kc := c.Kafka.Config
	if c.embedded() {
		kc.Brokers = []string{"embedded"} // filled in at start
	}
	if err := kc.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.ClickHouse.Enabled {
	case "auto", "true", "false":
	default:
		errs = append(errs, fmt.Errorf("clickhouse.enabled: %q: expected auto, true or false", c.ClickHouse.Enabled))
	}
	if c.ClickHouse.Enabled != "false" {
		if err := c.ClickHouse.ClickHouseConfig.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Pipeline.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.State.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseMarkup(c.Prices.Markup); err != nil {
		errs = append(errs, fmt.Errorf("prices.markup: %w", err))
	}
	if err := c.Kafka.Decode.Options().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("kafka.decode: %w", err))
	}
	if err := c.Prices.SyncConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.checkStateTopic())
	errs = append(errs, c.Log.validate("log.level: ", "log.format: "))
	errs = append(errs, c.Webhooks.Validate())
	errs = append(errs, c.Balances.validate(), c.checkCommandTopic())
	if c.MemoryLimit != nil && *c.MemoryLimit != 0 && *c.MemoryLimit < 64<<20 {
		errs = append(errs, fmt.Errorf("memory_limit: %d: expected 0 (no limit) or at least 67108864 bytes (64 MiB)", *c.MemoryLimit))
	}
	errs = append(errs, c.checkMore()...) // config_check.go: ops and the checks the sections lack
	if c.Embedded.Port < 0 || c.Embedded.Port > 65535 {
		errs = append(errs, fmt.Errorf("embedded.port: %d: expected 0..65535", c.Embedded.Port))
	}
	return errors.Join(errs...)
}

// checkStateTopic refuses a price-state topic that is another topic tariff
// uses: its records would be read as price history, or the other topic's
// readers would see them.
func (c *Config) checkStateTopic() error {
	t := c.Prices.StateTopic
	if t == "" {
		return errors.New(`prices.state_topic: "": expected a topic name (default <kafka.group_id>.prices)`)
	}
	others := map[string]string{
		c.Kafka.ChangelogTopic: "kafka.changelog_topic", c.Kafka.DeadLetterTopic: "kafka.dead_letter_topic",
		c.Kafka.AlertsTopic: "kafka.alerts_topic", c.Prices.ChangesTopic: "prices.changes_topic",
	}
	for in := range c.Kafka.Topics {
		others[in] = "kafka.topics"
	}
	if field, ok := others[t]; ok {
		return fmt.Errorf("prices.state_topic: %q is also %s: expected a topic of its own", t, field)
	}
	return nil
}

// envOverrides maps environment variables to the fields they set. Secrets
// belong here rather than in the file.
var envOverrides = []struct {
	name string
	set  func(c *Config, v string)
}{
	{"TARIFF_KAFKA_BROKERS", func(c *Config, v string) { c.Kafka.Brokers = sources.SplitList(v) }},
	{"TARIFF_KAFKA_GROUP_ID", func(c *Config, v string) { c.Kafka.GroupID = v }},
	{"TARIFF_KAFKA_SASL_USERNAME", func(c *Config, v string) { c.Kafka.Security.SASL.Username = v }},
	{"TARIFF_KAFKA_SASL_PASSWORD", func(c *Config, v string) { c.Kafka.Security.SASL.Password = v }},
	{"TARIFF_CLICKHOUSE_ADDR", func(c *Config, v string) { c.ClickHouse.Addr = v }},
	{"TARIFF_CLICKHOUSE_DATABASE", func(c *Config, v string) { c.ClickHouse.Database = v }},
	{"TARIFF_CLICKHOUSE_USERNAME", func(c *Config, v string) { c.ClickHouse.Username = v }},
	{"TARIFF_CLICKHOUSE_PASSWORD", func(c *Config, v string) { c.ClickHouse.Password = v }},
	{"TARIFF_CLICKHOUSE_ENABLED", func(c *Config, v string) { c.ClickHouse.Enabled = v }},
	{"TARIFF_STATE_DIR", func(c *Config, v string) { c.State.Dir = v }},
	{"TARIFF_PRICES_FILE", func(c *Config, v string) { c.Prices.File = v }},
	{"TARIFF_MARKUP", func(c *Config, v string) { c.Prices.Markup = v }},
	{"TARIFF_LOG_LEVEL", func(c *Config, v string) { c.Log.Level = v }},
	{"TARIFF_OPS_LISTEN", func(c *Config, v string) { c.Ops.Listen = v }},
	{"TARIFF_OPS_ADVERTISE_URL", func(c *Config, v string) { c.Ops.AdvertiseURL = v }},
}

// LoadConfig reads path (none: the embedded default), applies environment
// overrides and defaults, and validates. Unknown YAML fields are errors, so
// a misspelt setting is never silently ignored.
func LoadConfig(path string) (*Config, error) {
	var c Config
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, errEOF(err)) {
			return nil, fmt.Errorf("config %s:\n%w", path, explainYAMLError(data, err))
		}
	}
	for _, o := range envOverrides {
		if v, ok := os.LookupEnv(o.name); ok {
			o.set(&c, v)
		}
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		if path == "" {
			path = "(defaults and environment)"
		}
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return &c, nil
}

// errEOF returns err itself when it is the empty-document EOF, so an empty
// config file means "all defaults".
func errEOF(err error) error {
	if err != nil && err.Error() == "EOF" {
		return err
	}
	return nil
}
