package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tariff-dev/tariff/schemas"
)

// clearTariffEnv unsets the environment overrides for the test, so that
// the machine's settings cannot change what a file means.
func clearTariffEnv(t *testing.T) {
	t.Helper()
	for _, o := range envOverrides {
		if v, ok := os.LookupEnv(o.name); ok {
			os.Unsetenv(o.name)
			t.Cleanup(func() { os.Setenv(o.name, v) })
		}
	}
}

// TestConfigCheckRejects runs `tariff config check` on files with one kind
// of bad value each: the command must fail and name the field and what it
// expected.
func TestConfigCheckRejects(t *testing.T) {
	clearTariffEnv(t)
	t.Setenv("TARIFF_TEST_SHORT_TOKEN", "short")
	t.Setenv("TARIFF_TEST_ALERT_SECRET", "0123456789abcdef0123")
	dir := t.TempDir()
	check := func(name, file string, want ...string) {
		t.Helper()
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		code := runMain([]string{"config", "check", path}, &stdout, &stderr)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1; stdout %q stderr %q", name, code, stdout.String(), stderr.String())
			return
		}
		for _, w := range want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%s: the message does not say %q:\n%s", name, w, stderr.String())
			}
		}
	}

	// Durations.
	check("negative duration", "kafka:\n  max_batch_wait: -5s\n", "kafka.max_batch_wait", "-5s", "expected a positive duration")
	check("duration without unit", "kafka:\n  max_batch_wait: 5\n", "kafka.max_batch_wait (line 2)", `"5"`, "expected a duration such as 200ms")
	check("duration word", "clickhouse:\n  dial_timeout: soon\n", "clickhouse.dial_timeout (line 2)", `"soon"`, "expected a duration")
	check("duration too short", "state:\n  dedup_window: 10m\n", "state.dedup_window", "expected at least 1h")
	check("retry bounds", "pipeline:\n  retry_min: 2s\n  retry_max: 1s\n", "pipeline.retry_", "2s", "retry_max")
	check("ops check timeout", "ops:\n  check_timeout: -1s\n", "ops.check_timeout", "expected a positive duration")
	check("session timeout", "kafka:\n  session_timeout: 1s\n", "kafka.session_timeout", "expected between 6s and 5m")

	// Sizes and counts.
	check("size with unit", "kafka:\n  max_batch_bytes: 8MB\n", "kafka.max_batch_bytes (line 2)", `"8MB"`, "expected a whole number")
	check("negative size", "kafka:\n  max_batch_bytes: -1\n", "kafka.max_batch_bytes", "expected a positive size in bytes")
	check("size too small", "prices:\n  max_list_bytes: 100\n", "prices.max_list_bytes", "expected at least 1024")
	check("negative count", "output:\n  console_max_per_second: -3\n", "output.console_max_per_second", "expected a positive count")

	// Enumerations and booleans.
	check("enum clickhouse", "clickhouse:\n  enabled: maybe\n", "clickhouse.enabled", "expected auto, true or false")
	check("enum level", "log:\n  level: loud\n", "log.level", "expected trace, debug, info, warn or error")
	check("enum format", "log:\n  format: xml\n", "log.format", "expected console or json")
	check("enum rollout", "prices:\n  rollout: everyone\n", "prices.rollout", "all-customers")
	check("boolean", "state:\n  sync_writes: maybe\n", "state.sync_writes (line 2)", "expected true or false")

	// Addresses.
	check("clickhouse address", "clickhouse:\n  addr: localhost\n", "clickhouse.addr", "expected host:port")
	check("broker address", "kafka:\n  brokers: [kafka-1]\n", "kafka.brokers[0]", `"kafka-1"`, "expected host:port")
	check("broker port", "kafka:\n  brokers: [\"kafka-1:http\"]\n", "kafka.brokers[0]", "expected 1..65535")
	check("ops address", "ops:\n  listen: \"9464\"\n", "ops.listen", "expected host:port")
	check("ops port", "ops:\n  listen: 127.0.0.1:99999\n", "ops.listen", "expected 0..65535")
	check("embedded port", "embedded:\n  port: 70000\n", "embedded.port", "expected 0..65535")

	// Percentages.
	check("markup", "prices:\n  markup: thirty\n", "prices.markup", `"thirty"`, "expected a percentage")
	check("percent range", "prices:\n  max_removed_percent: 150\n", "prices.max_removed_percent", "expected 0..100")

	// The topic map.
	check("topic format", "kafka:\n  topics:\n    tariff.usage.gateway: csv\n", "kafka.topics[tariff.usage.gateway]", `"csv"`, "expected gateway, litellm, openrouter, meter, auto or command")
	check("topic map as list", "kafka:\n  topics: [a, b]\n", "kafka.topics (line 2)", "expected a mapping of name: value")
	check("topic name", "kafka:\n  topics:\n    \"usage events\": gateway\n", "kafka.topics", `"usage events"`, "expected a Kafka topic name")
	check("dead-letter topic", "kafka:\n  dead_letter_topic: \"dead/letters\"\n", "kafka.dead_letter_topic", "expected a Kafka topic name")

	// URLs.
	check("source scheme", "prices:\n  sources: [\"ftp://prices.example.com/list.json\"]\n", "prices.sources[0]", "only http and https")
	check("webhook URL", "prices:\n  webhooks:\n    - url: billing.example.com/hook\n      secret: 0123456789abcdef\n", "prices.webhooks[0].url", "expected an http or https URL")
	check("webhook secret", "prices:\n  webhooks:\n    - url: https://billing.example.com/hook\n", "prices.webhooks[0]", "secret: required")
	check("alert webhook URL", "webhooks:\n  alerts:\n    - url: billing.example.com/hooks/alerts\n      secret: {env: TARIFF_TEST_ALERT_SECRET}\n",
		"webhooks.alerts[0].url", `"billing.example.com/hooks/alerts"`, "expected an http or https URL")
	check("alert webhook secret", "webhooks:\n  alerts:\n    - url: https://billing.example.com/hooks/alerts\n", "webhooks.alerts[0].secret: required", "at least 16 bytes")
	check("alert webhook short secret", "webhooks:\n  alerts:\n    - url: https://billing.example.com/hooks/alerts\n      secret: {env: TARIFF_TEST_SHORT_TOKEN}\n",
		"webhooks.alerts[0].secret", "5 bytes: expected at least 16")
	check("alert webhook retries", "webhooks:\n  retry_min: 1s\n  retry_max: 100ms\n  max_attempts: 0\n", "webhooks.retry_max", "expected at least retry_min")

	// Secrets, unknown fields, sections.
	check("short admin token", "ops:\n  admin_token: {env: TARIFF_TEST_SHORT_TOKEN}\n", "ops.admin_token", "5 bytes: expected at least 16")
	check("admin token twice", "ops:\n  admin_token: {env: X, file: /y}\n", "ops.admin_token", "expected one of them")
	check("unknown field", "kafka:\n  max_batch_wiat: 1s\n", "kafka.max_batch_wiat (line 2)", "unknown field")
	check("section as value", "log: debug\n", "log (line 1)", `"debug"`, "expected a section with fields")
	check("memory limit", "memory_limit: 1000\n", "memory_limit", "at least 67108864")
	check("plan fee", "balances:\n  plans:\n    - {id: pro, cycle: {kind: monthly}, fee: -5}\n", "balances.plans[0]", "plan.fee", "non-negative")
	check("plan twice", "balances:\n  plans:\n    - {id: pro, cycle: {kind: monthly}}\n    - {id: pro, version: 2, cycle: {kind: monthly}}\n",
		"balances.plans[1].id", "expected each plan id once")
	check("plan unknown field", "balances:\n  plans:\n    - {id: pro, cycle: {kind: monthly}, feee: 5}\n", "balances.plans", `unknown field "feee"`)
	check("plan overage", "balances:\n  plans:\n    - {id: pro, cycle: {kind: monthly}, overage: maybe}\n", "balances.plans", "maybe")
	check("two command topics", "kafka:\n  topics: {a: command, b: command, c: gateway}\n", "kafka.topics", "at most one command topic")

	// Several bad fields are all named at once.
	check("several", "log:\n  level: loud\nclickhouse:\n  addr: nowhere\nops:\n  listen: x\n", "log.level", "clickhouse.addr", "ops.listen")
}

// TestConfigCheckAcceptsExample: the example file is valid, its values are
// the defaults, and it documents every field of Config.
func TestConfigCheckAcceptsExample(t *testing.T) {
	clearTariffEnv(t)
	const example = "../../config.example.yaml"
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"config", "check", example}, &stdout, &stderr); code != 0 {
		t.Fatalf("config check %s: exit %d\n%s", example, code, stderr.String())
	}
	got, err := LoadConfig(example)
	if err != nil {
		t.Fatal(err)
	}
	def, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	// Defaults applied by the components themselves, not by SetDefaults
	// (pipeline.NewRunner, sources.StartEmbedded).
	def.Pipeline.RetryMin, def.Pipeline.RetryMax = 200*time.Millisecond, 30*time.Second
	def.Embedded.Partitions = 3
	def.Kafka.Decode.LiteLLMCustomerFields = schemas.DefaultLiteLLMCustomerFields
	def.Kafka.Decode.OpenRouterCustomerFields = schemas.DefaultOpenRouterCustomerFields
	def.Kafka.Decode.MeterCustomerFields = schemas.DefaultMeterCustomerFields
	if !reflect.DeepEqual(normalize(got), normalize(def)) {
		t.Errorf("config.example.yaml does not show the defaults:\nexample  %+v\ndefaults %+v", got, def)
	}

	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	collectKeys(&root, "", keys)
	var comments []string
	for _, l := range strings.Split(string(data), "\n") {
		if s := strings.TrimSpace(l); strings.HasPrefix(s, "#") {
			comments = append(comments, s)
		}
	}
	var missing []string
	for _, p := range configPaths(reflect.TypeOf(Config{}), "") {
		if keys[p] {
			continue
		}
		// A field shown in a commented example (webhooks, output.console)
		// counts when its section is in the file.
		i := strings.LastIndexByte(p, '.')
		section, leaf := "", p
		if i >= 0 {
			section, leaf = strings.TrimSuffix(p[:i], "[]"), p[i+1:]
			// A list's fields (webhooks.alerts[].secret.env) count when
			// the list is in the file.
			if j := strings.Index(section, "[]"); j >= 0 {
				section = section[:j]
			}
		}
		documented := false
		for _, c := range comments {
			if strings.Contains(c, " "+leaf+":") || strings.Contains(c, "- "+leaf+":") {
				documented = true
				break
			}
		}
		if !documented || (section != "" && !keys[section]) {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("config.example.yaml does not document these fields (add each with its default and a comment):\n  %s", strings.Join(missing, "\n  "))
	}
}

// normalize makes empty lists and maps nil, so that "[]" in the file and
// an absent field compare equal.
func normalize(c *Config) *Config {
	n := *c
	if len(n.Kafka.Brokers) == 0 {
		n.Kafka.Brokers = nil
	}
	if len(n.Prices.Aliases) == 0 {
		n.Prices.Aliases = nil
	}
	if len(n.Prices.Sources) == 0 {
		n.Prices.Sources = nil
	}
	if len(n.Prices.Webhooks) == 0 {
		n.Prices.Webhooks = nil
	}
	if len(n.Webhooks.Alerts) == 0 {
		n.Webhooks.Alerts = nil
	}
	if len(n.Balances.Plans) == 0 {
		n.Balances.Plans = nil
	}
	return &n
}

// collectKeys records every mapping key's dotted path; sequence items add
// [] to the path.
func collectKeys(n *yaml.Node, path string, keys map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectKeys(c, path, keys)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			keys[p] = true
			collectKeys(n.Content[i+1], p, keys)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			collectKeys(c, path+"[]", keys)
		}
	}
}

// configPaths lists the YAML path of every leaf field of t: inline
// structs flattened, sections recursed, list elements as [].
func configPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if strings.Contains(opts, "inline") {
			out = append(out, configPaths(ft, prefix)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		p := prefix + name
		switch {
		case reflect.PointerTo(ft).Implements(reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()):
			// Decoded by its own rules (balances.plans): one documented entry.
			out = append(out, p)
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
			out = append(out, configPaths(ft, p+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, configPaths(ft.Elem(), p+"[].")...)
		default:
			out = append(out, p)
		}
	}
	return out
}
