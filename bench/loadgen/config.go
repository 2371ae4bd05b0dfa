package loadgen

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// Format is a message format the generator writes.
type Format uint8

const (
	FormatGateway Format = iota
	FormatLiteLLM
	FormatMeter
	// FormatOpenRouter is an OpenRouter chat completion response wrapped
	// with the customer it was made for ({"customer_id", "response",
	// "dimensions", "time"}), as a customer's OpenRouter integration
	// forwards it.
	FormatOpenRouter

	numFormats
)

var formatNames = [numFormats]string{schemas.FormatGateway, schemas.FormatLiteLLM, schemas.FormatMeter, schemas.FormatOpenRouter}

// String returns the schemas decoder format name, so that
// schemas.DecoderFor(f.String(), ...) decodes the format.
func (f Format) String() string {
	if f < numFormats {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", f)
}

// ParseFormat maps a name (gateway, litellm, meter, openrouter) to a Format.
func ParseFormat(s string) (Format, error) {
	for i, n := range formatNames {
		if n == s {
			return Format(i), nil
		}
	}
	return 0, fmt.Errorf("format %q: expected gateway, litellm, meter or openrouter", s)
}

// Weights are the relative shares of the formats among generated requests,
// indexed by Format.
type Weights [numFormats]int

// DefaultWeights: mostly the gateway's own events, some partner callbacks,
// a few self-reported meter records. OpenRouter is off by default so that
// the streams of existing seeds stay byte-identical; MixedWeights has all
// four formats.
var DefaultWeights = Weights{FormatGateway: 70, FormatLiteLLM: 20, FormatMeter: 10}

// MixedWeights has every format: the gateway's own events, LiteLLM and
// OpenRouter callbacks, self-reported meter records.
var MixedWeights = Weights{FormatGateway: 60, FormatLiteLLM: 20, FormatOpenRouter: 10, FormatMeter: 10}

// ParseWeights reads "gateway=60,litellm=20,openrouter=10,meter=10".
// Formats not named get weight 0.
func ParseWeights(s string) (Weights, error) {
	var w Weights
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return w, fmt.Errorf("formats %q: %q: expected name=weight", s, part)
		}
		f, err := ParseFormat(strings.TrimSpace(name))
		if err != nil {
			return w, fmt.Errorf("formats %q: %w", s, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || n < 0 {
			return w, fmt.Errorf("formats %q: weight %q of %s: expected a non-negative integer", s, val, f)
		}
		w[f] = n
	}
	if w.total() == 0 {
		return w, fmt.Errorf("formats %q: expected at least one positive weight, e.g. gateway=70,litellm=20,meter=10", s)
	}
	return w, nil
}

func (w Weights) total() int {
	t := 0
	for _, v := range w {
		t += v
	}
	return t
}

func (w Weights) String() string {
	var parts []string
	for f, v := range w {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", Format(f), v))
		}
	}
	return strings.Join(parts, ",")
}

// LatenessBucket is one part of the lateness distribution: Share of the
// events are late by a duration drawn uniformly between the previous
// bucket's Max (0 for the first) and Max.
type LatenessBucket struct {
	Share float64
	Max   time.Duration
}

// Lateness is how far an event's time lies before the moment the stream
// reaches it. Buckets are in increasing Max; shares are relative.
type Lateness []LatenessBucket

// DefaultLateness: most events within seconds, some minutes late (retries,
// batching gateways), a few hours late (partner backfills).
var DefaultLateness = Lateness{{90, 2 * time.Second}, {9, 10 * time.Minute}, {1, 6 * time.Hour}}

// ParseLateness reads "90:2s,9:10m,1:6h" (share:max, shares relative).
func ParseLateness(s string) (Lateness, error) {
	var l Lateness
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		sh, mx, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("lateness %q: %q: expected share:max, e.g. 90:2s", s, part)
		}
		share, err := strconv.ParseFloat(strings.TrimSpace(sh), 64)
		if err != nil {
			return nil, fmt.Errorf("lateness %q: share %q: expected a number", s, sh)
		}
		d, err := time.ParseDuration(strings.TrimSpace(mx))
		if err != nil {
			return nil, fmt.Errorf("lateness %q: max %q: expected a duration such as 2s or 6h", s, mx)
		}
		l = append(l, LatenessBucket{share, d})
	}
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("lateness %q: %w", s, err)
	}
	return l, nil
}

func (l Lateness) validate() error {
	if len(l) == 0 {
		return errors.New("no buckets")
	}
	total := 0.0
	var prev time.Duration
	for i, b := range l {
		if b.Share < 0 || math.IsNaN(b.Share) || math.IsInf(b.Share, 0) {
			return fmt.Errorf("bucket %d: share %v: expected a finite non-negative number", i, b.Share)
		}
		if b.Max < prev {
			return fmt.Errorf("bucket %d: max %s is below the previous bucket's %s; expected increasing maxima", i, b.Max, prev)
		}
		prev = b.Max
		total += b.Share
	}
	if total <= 0 {
		return errors.New("shares sum to 0")
	}
	return nil
}

func (l Lateness) String() string {
	parts := make([]string, len(l))
	for i, b := range l {
		parts[i] = strconv.FormatFloat(b.Share, 'f', -1, 64) + ":" + shortDuration(b.Max)
	}
	return strings.Join(parts, ",")
}

// shortDuration prints 10m and 6h rather than 10m0s and 6h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Topics names the input topic of each format. LiteLLM and OpenRouter
// payloads go to the partner topic, which tariff decodes with the auto
// decoder by default.
type Topics struct {
	Gateway string `json:"gateway"`
	Partner string `json:"partner"`
	Meter   string `json:"meter"`
	// DeadLetter is where tariff puts refused messages; the generator only
	// records it in the expectation (every malformed message ends there).
	DeadLetter string `json:"dead_letter"`
}

// DefaultTopics are tariff's default topic names.
var DefaultTopics = Topics{
	Gateway:    "tariff.usage.gateway",
	Partner:    "tariff.usage.partner",
	Meter:      "tariff.usage.meter",
	DeadLetter: "tariff.deadletter",
}

func (t *Topics) of(f Format) string {
	switch f {
	case FormatLiteLLM, FormatOpenRouter:
		return t.Partner
	case FormatMeter:
		return t.Meter
	}
	return t.Gateway
}

// Model selections for Config.Models.
const (
	// ModelsDefault is a few dozen popular chat models (those of them the
	// price list prices).
	ModelsDefault = "default"
	// ModelsAll is every chat-like entry of the price list with input and
	// output token prices.
	ModelsAll = "all"
)

// Config describes one stream. Everything the stream contains follows from
// it: the same Config gives byte-identical messages and the same totals.
// DefaultConfig returns the defaults noted on each field; New does not fill
// in zero shares (0 duplicates is a valid choice), but it does default the
// fields whose zero value is meaningless (noted "zero: default").
type Config struct {
	// Seed selects the stream. Default 1.
	Seed uint64
	// Events is the number of messages: fresh requests, duplicates and
	// malformed messages together. Required.
	Events int
	// Customers is how many customers usage is spread over (Zipf); ids are
	// cust-000000 ... Default 1000; at most 16,777,215.
	Customers int
	// CustomerSkew is the Zipf exponent over customers (> 1; larger is more
	// skewed). Zero: default 1.1.
	CustomerSkew float64
	// Models selects the models: ModelsDefault, ModelsAll, or a count N for
	// the first N of the default set followed by the rest of the list in key
	// order. Zero: ModelsDefault. OpenRouter messages draw from a second
	// catalog chosen the same way among the models the price list prices
	// for provider openrouter (OpenRouter reports its own slugs, and they
	// resolve to its own price entries); the other formats never report
	// those slugs, so their streams do not change with it.
	Models string
	// ModelSkew is the Zipf exponent over models (> 1). Zero: default 1.2.
	ModelSkew float64
	// Formats weighs the formats of generated requests. Zero:
	// DefaultWeights (no OpenRouter); MixedWeights has all four.
	Formats Weights
	// DupShare is the share of messages that re-send an earlier request.
	// Default 0.02.
	DupShare float64
	// LateDupShare is the share of duplicates held back to a random point
	// anywhere in the rest of the stream; the others follow their original
	// within NearDupWindow messages. Default 0.3.
	LateDupShare float64
	// NearDupWindow bounds how many messages after its original a "near"
	// duplicate comes. Zero: default 1000.
	NearDupWindow int
	// CrossFormatShare is the share of duplicates of gateway and LiteLLM
	// requests sent through the other of the two formats (and so another
	// topic). Default 0.3.
	CrossFormatShare float64
	// MalformedShare is the share of messages that are malformed. Default
	// 0.005.
	MalformedShare float64
	// Start is the stream's event-time origin: message i is "now" at
	// Start + Span*i/Events, and its event time is that minus its lateness.
	// Required (a fixed value keeps the stream reproducible).
	Start time.Time
	// Span is the event time the stream covers. Default 1h.
	Span time.Duration
	// Lateness is the distribution of event lateness. Zero: DefaultLateness.
	Lateness Lateness
	// LongContextShare is the share of requests to models with a
	// long-context price band whose prompt exceeds the band. Default 0.005.
	LongContextShare float64
	// Topics are the input topics. Zero fields: DefaultTopics.
	Topics Topics
	// PriceList is the price list the expectation is computed from (a
	// LiteLLM map or an OpenRouter model list): the one the pipeline under
	// test rates with. Nil: the LiteLLM map bundled with tariff.
	PriceList []byte
	// Markup is the markup percentage the pipeline applies ("30", "12.5").
	// Zero: "0".
	Markup string
}

// DefaultConfig returns a Config with every default set; the caller sets
// Events and Start.
func DefaultConfig() Config {
	return Config{
		Seed:             1,
		Customers:        1000,
		CustomerSkew:     1.1,
		Models:           ModelsDefault,
		ModelSkew:        1.2,
		Formats:          DefaultWeights,
		DupShare:         0.02,
		LateDupShare:     0.3,
		NearDupWindow:    1000,
		CrossFormatShare: 0.3,
		MalformedShare:   0.005,
		Span:             time.Hour,
		Lateness:         DefaultLateness,
		LongContextShare: 0.005,
		Topics:           DefaultTopics,
		Markup:           "0",
	}
}

// maxCustomers bounds Customers: customer indexes are packed into 24 bits
// of the expectation's accumulator key.
const maxCustomers = 1<<24 - 1

func (c *Config) applyZeroDefaults() {
	d := DefaultConfig()
	if c.Customers == 0 {
		c.Customers = d.Customers
	}
	if c.CustomerSkew == 0 {
		c.CustomerSkew = d.CustomerSkew
	}
	if c.Models == "" {
		c.Models = d.Models
	}
	if c.ModelSkew == 0 {
		c.ModelSkew = d.ModelSkew
	}
	if c.Formats.total() == 0 {
		c.Formats = d.Formats
	}
	if c.NearDupWindow == 0 {
		c.NearDupWindow = d.NearDupWindow
	}
	if len(c.Lateness) == 0 {
		c.Lateness = d.Lateness
	}
	if c.Topics.Gateway == "" {
		c.Topics.Gateway = d.Topics.Gateway
	}
	if c.Topics.Partner == "" {
		c.Topics.Partner = d.Topics.Partner
	}
	if c.Topics.Meter == "" {
		c.Topics.Meter = d.Topics.Meter
	}
	if c.Topics.DeadLetter == "" {
		c.Topics.DeadLetter = d.Topics.DeadLetter
	}
	if c.Markup == "" {
		c.Markup = d.Markup
	}
}

// Validate reports every bad field, naming the value and what was expected.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, v any, want string) {
		errs = append(errs, fmt.Errorf("%s: %v: expected %s", field, v, want))
	}
	share := func(field string, v float64, max float64) {
		if !(v >= 0 && v <= max) {
			bad(field, v, fmt.Sprintf("a share between 0 and %v", max))
		}
	}
	if c.Events <= 0 {
		bad("Events", c.Events, "a positive message count")
	}
	if c.Customers <= 0 || c.Customers > maxCustomers {
		bad("Customers", c.Customers, fmt.Sprintf("between 1 and %d", maxCustomers))
	}
	if !(c.CustomerSkew > 1) || math.IsInf(c.CustomerSkew, 0) {
		bad("CustomerSkew", c.CustomerSkew, "a Zipf exponent above 1, e.g. 1.1")
	}
	if !(c.ModelSkew > 1) || math.IsInf(c.ModelSkew, 0) {
		bad("ModelSkew", c.ModelSkew, "a Zipf exponent above 1, e.g. 1.2")
	}
	if c.Models != ModelsDefault && c.Models != ModelsAll {
		if n, err := strconv.Atoi(c.Models); err != nil || n <= 0 {
			bad("Models", strconv.Quote(c.Models), `"default", "all" or a positive count`)
		}
	}
	for f, w := range c.Formats {
		if w < 0 {
			bad("Formats", fmt.Sprintf("%s=%d", Format(f), w), "non-negative weights")
		}
	}
	if c.Formats.total() <= 0 {
		bad("Formats", c.Formats, "at least one positive weight")
	}
	share("DupShare", c.DupShare, 0.3)
	share("MalformedShare", c.MalformedShare, 0.3)
	share("LateDupShare", c.LateDupShare, 1)
	share("CrossFormatShare", c.CrossFormatShare, 1)
	share("LongContextShare", c.LongContextShare, 1)
	if c.NearDupWindow <= 0 {
		bad("NearDupWindow", c.NearDupWindow, "a positive message count")
	}
	if c.Start.IsZero() {
		bad("Start", "zero time", "the stream's event-time origin (fixed, for a reproducible stream)")
	} else if c.Start.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(24 * time.Hour)) {
		bad("Start", c.Start.Format(time.RFC3339), "a time after 2000-01-02 (decoders refuse earlier times)")
	}
	if c.Span < 0 {
		bad("Span", c.Span, "a non-negative duration")
	}
	if err := c.Lateness.validate(); err != nil {
		errs = append(errs, fmt.Errorf("Lateness: %w", err))
	}
	if _, err := markupMultiplier(c.Markup); err != nil {
		errs = append(errs, fmt.Errorf("Markup: %w", err))
	}
	return errors.Join(errs...)
}

// markupMultiplier returns 1 + pct/100 for a markup percentage, exactly.
// It accepts what rating.ParseMarkup accepts (and refuses what it refuses,
// by asking it), so the expectation charges the markup the pipeline does.
func markupMultiplier(pct string) (decimal.Decimal, error) {
	if _, err := rating.ParseMarkup(pct); err != nil {
		return decimal.Decimal{}, err
	}
	d, err := decimal.NewFromString(strings.TrimSuffix(pct, "%"))
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("markup %q: expected a percentage such as 30 or 12.5", pct)
	}
	return decimal.NewFromInt(1).Add(d.Shift(-2)), nil
}
