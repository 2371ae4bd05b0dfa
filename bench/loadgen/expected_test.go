package loadgen

import (
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/schemas"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// TestExpectedHandChecked feeds hand-made requests to the expectation and
// checks it against numbers worked out by hand from the bundled price map
// (claude-sonnet-4-5-20250929: input 3e-6, cache read 3e-7, cache write
// 3.75e-6, output 1.5e-5; above 200k prompt tokens: input 6e-6, cache read
// 6e-7, output 2.25e-5), markup 30%.
func TestExpectedHandChecked(t *testing.T) {
	cfg := testConfig(1)
	cfg.Markup = "30"
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sonnet := -1
	for i := range g.models {
		if g.models[i].key == "claude-sonnet-4-5-20250929" {
			sonnet = i
		}
	}
	if sonnet < 0 {
		t.Fatal("claude-sonnet-4-5-20250929 not in the default model set")
	}
	req := func(cust uint32, f Format, in, cached, w5, out, reasoning int64) *Request {
		r := &Request{Customer: cust, Model: uint32(sonnet), Format: f, TimeMs: testStart.UnixMilli()}
		q := &r.Quantities
		q[schemas.UnitInput], q[schemas.UnitCachedInput], q[schemas.UnitCacheWrite5m] = in, cached, w5
		q[schemas.UnitOutput], q[schemas.UnitReasoning], q[schemas.UnitRequests] = out, reasoning, 1
		return r
	}
	// The shared payloads' request (cost 0.02025), once as a gateway event
	// and once as meter records: the same money either way.
	g.account(req(0, FormatGateway, 1200, 8000, 2000, 330, 120))
	g.account(req(0, FormatMeter, 1200, 8000, 2000, 330, 120))
	// A long-context request: 210,000 prompt tokens cross the 200k band as
	// one gateway event, but as meter records each record is judged alone
	// (150,000 and 60,000), below the band.
	g.account(req(1, FormatGateway, 150_000, 60_000, 0, 1000, 0))
	g.account(req(1, FormatMeter, 150_000, 60_000, 0, 1000, 0))

	e := g.Expected()
	want := []Line{
		// customer 0: 1200×3e-6 = 0.0036 twice; 8000×3e-7 = 0.0024 twice;
		// 2000×3.75e-6 = 0.0075 twice; 330×1.5e-5 = 0.00495 twice;
		// reasoning at the output price 120×1.5e-5 = 0.0018 twice.
		{"cust-000000", "claude-sonnet-4-5-20250929", "input", 2400, dec("0.0072"), dec("0.00936")},
		{"cust-000000", "claude-sonnet-4-5-20250929", "cached_input", 16000, dec("0.0048"), dec("0.00624")},
		{"cust-000000", "claude-sonnet-4-5-20250929", "cache_write_5m", 4000, dec("0.015"), dec("0.0195")},
		{"cust-000000", "claude-sonnet-4-5-20250929", "output", 660, dec("0.0099"), dec("0.01287")},
		{"cust-000000", "claude-sonnet-4-5-20250929", "reasoning", 240, dec("0.0036"), dec("0.00468")},
		// customer 1: input 150000×6e-6 = 0.9 + 150000×3e-6 = 0.45;
		// cached 60000×6e-7 = 0.036 + 60000×3e-7 = 0.018;
		// output 1000×2.25e-5 = 0.0225 + 1000×1.5e-5 = 0.015.
		{"cust-000001", "claude-sonnet-4-5-20250929", "input", 300_000, dec("1.35"), dec("1.755")},
		{"cust-000001", "claude-sonnet-4-5-20250929", "cached_input", 120_000, dec("0.054"), dec("0.0702")},
		{"cust-000001", "claude-sonnet-4-5-20250929", "output", 2000, dec("0.0375"), dec("0.04875")},
	}
	if len(e.Lines) != len(want) {
		t.Fatalf("%d lines, want %d: %+v", len(e.Lines), len(want), e.Lines)
	}
	for i, w := range want {
		got := e.Lines[i]
		if got.CustomerID != w.CustomerID || got.PriceKey != w.PriceKey || got.Unit != w.Unit || got.Quantity != w.Quantity ||
			!got.Cost.Equal(w.Cost) || !got.Charge.Equal(w.Charge) {
			t.Errorf("line %d: got %+v, want %+v", i, got, w)
		}
	}
	if !e.Cost.Equal(dec("1.482")) || !e.Charge.Equal(dec("1.9266")) {
		t.Errorf("grand totals cost %s charge %s, want 1.482 and 1.9266", e.Cost, e.Charge)
	}
	// 1 + 6 meter records (requests, input, cached, write, output,
	// reasoning) + 1 + 4 (requests, input, cached, output).
	if e.Counts.Events != 12 {
		t.Errorf("%d events, want 12", e.Counts.Events)
	}

	// Compare reports each kind of difference, exactly.
	obs, err := e.Totals()
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Compare(obs); len(d) != 0 {
		t.Fatalf("the expectation differs from itself: %v", d)
	}
	k0 := Key{"cust-000000", "claude-sonnet-4-5-20250929", schemas.UnitOutput}
	obs[k0] = Total{660, dec("0.00990"), dec("0.012871")} // charge off by 1e-6; "0.00990" equals 0.0099
	delete(obs, Key{"cust-000001", "claude-sonnet-4-5-20250929", schemas.UnitInput})
	obs.Add(Key{"cust-000002", "gpt-4o", schemas.UnitInput}, 10, dec("0.000025"), dec("0.0000325"))
	diffs, err := e.Compare(obs)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 3 || diffs[0].Key != k0 || !diffs[1].Missing || !diffs[2].Unexpected {
		t.Fatalf("diffs:\n%s", Summarize(diffs, 10))
	}
	if s := diffs[0].String(); !strings.Contains(s, "charge 0.012871, want 0.01287 (0.000001)") {
		t.Errorf("difference reads %q", s)
	}
}

func streamHash(t *testing.T, cfg Config) ([32]byte, *Expected) {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	var m Message
	for g.Next(&m) {
		h.Write([]byte(m.Topic))
		h.Write([]byte{0})
		h.Write(m.Key)
		h.Write([]byte{0})
		h.Write(m.Value)
		h.Write([]byte{0, byte(m.Kind), byte(m.Malformation)})
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, g.Expected()
}

func TestDeterministic(t *testing.T) {
	cfg := testConfig(5000)
	h1, e1 := streamHash(t, cfg)
	h2, e2 := streamHash(t, cfg)
	if h1 != h2 {
		t.Fatal("the same config gave two different streams")
	}
	j1, _ := json.Marshal(e1)
	j2, _ := json.Marshal(e2)
	if string(j1) != string(j2) {
		t.Fatal("the same config gave two different expectations")
	}
	cfg.Seed++
	if h3, _ := streamHash(t, cfg); h3 == h1 {
		t.Fatal("another seed gave the same stream")
	}
}

func TestExpectedFileRoundTrip(t *testing.T) {
	g, err := New(testConfig(3000))
	if err != nil {
		t.Fatal(err)
	}
	var m Message
	for g.Next(&m) {
	}
	e := g.Expected()
	dir := t.TempDir()
	path := filepath.Join(dir, "expected.json")
	if err := e.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	// The streaming writer writes the same bytes.
	streamed := filepath.Join(dir, "streamed.json")
	if _, err := g.WriteExpected(streamed); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(streamed)
	if string(a) != string(b) {
		t.Fatal("WriteExpected and Expected().WriteFile wrote different files")
	}
	back, err := ReadExpected(path)
	if err != nil {
		t.Fatal(err)
	}
	bt, _ := back.Totals()
	if d, _ := e.Compare(bt); len(d) != 0 || !back.Cost.Equal(e.Cost) || !back.Charge.Equal(e.Charge) ||
		!reflect.DeepEqual(back.Counts, e.Counts) || back.Stream.PriceVersion != e.Stream.PriceVersion || !back.Complete {
		t.Fatalf("round trip changed the expectation: %d diffs", len(d))
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	err := cfg.Validate()
	for _, want := range []string{"Events: 0", "Start: zero time"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
	cfg = testConfig(10)
	cfg.Markup = "12.345"
	cfg.DupShare = 0.9
	cfg.Models = "some"
	err = cfg.Validate()
	for _, want := range []string{"Markup", "DupShare: 0.9", `Models: "some"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
	if _, err := ParseWeights("gateway=70,bedrock=5"); err == nil || !strings.Contains(err.Error(), `"bedrock"`) {
		t.Errorf("ParseWeights accepted an unknown format: %v", err)
	}
	w, err := ParseWeights("gateway=70, litellm=20 ,meter=10")
	if err != nil || w != DefaultWeights {
		t.Errorf("ParseWeights = %v, %v", w, err)
	}
	if w, err := ParseWeights(MixedWeights.String()); err != nil || w != MixedWeights || w[FormatOpenRouter] != 10 {
		t.Errorf("ParseWeights(%q) = %v, %v", MixedWeights.String(), w, err)
	}
	l, err := ParseLateness("90:2s,9:10m,1:6h")
	if err != nil || !reflect.DeepEqual(l, DefaultLateness) {
		t.Errorf("ParseLateness = %v, %v", l, err)
	}
	if _, err := ParseLateness("50:1h,50:1s"); err == nil {
		t.Error("ParseLateness accepted decreasing maxima")
	}
}

// TestOpenRouterCatalog: OpenRouter messages report OpenRouter's slugs,
// each resolving to an OpenRouter price entry, and a price list with none
// is refused when OpenRouter has a weight.
func TestOpenRouterCatalog(t *testing.T) {
	cfg := testConfig(3000)
	cfg.Formats = Weights{FormatOpenRouter: 1}
	cfg.Models = "3"
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(g.models) - g.nMain; n != 3 {
		t.Fatalf("%d OpenRouter models for -models 3, want 3", n)
	}
	var m Message
	used := map[string]bool{}
	for g.Next(&m) {
		if m.Format != FormatOpenRouter || m.Topic != cfg.Topics.Partner {
			t.Fatalf("message in format %s on %s, want only OpenRouter on the partner topic", m.Format, m.Topic)
		}
		mod := &g.models[m.Request.Model]
		if mod.provider != schemas.OpenRouterProvider || !strings.HasPrefix(mod.key, "openrouter/") || strings.HasPrefix(mod.name, "openrouter/") {
			t.Fatalf("OpenRouter message reports %s/%s priced as %s; want an OpenRouter slug priced by an openrouter/ entry", mod.provider, mod.name, mod.key)
		}
		if m.Request.Tier != schemas.TierStandard || m.Request.Quantities[schemas.UnitCacheWrite1h] != 0 {
			t.Fatalf("OpenRouter request in tier %s with %d 1-hour writes; OpenRouter has neither", m.Request.Tier, m.Request.Quantities[schemas.UnitCacheWrite1h])
		}
		used[mod.name] = true
	}
	if len(used) != 3 {
		t.Errorf("the stream used %d OpenRouter models, want all 3: %v", len(used), used)
	}

	cfg.PriceList = []byte(`{"gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}`)
	cfg.Formats = MixedWeights
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "openrouter=10") {
		t.Errorf("New with OpenRouter weight and no OpenRouter prices = %v, want an error naming the weight", err)
	}
	cfg.Formats = DefaultWeights
	if _, err := New(cfg); err != nil {
		t.Errorf("New without OpenRouter on a list without OpenRouter prices: %v", err)
	}
}
