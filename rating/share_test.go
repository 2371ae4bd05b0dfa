package rating

import (
	"bytes"
	"sync"
	"testing"

	"github.com/tariff-dev/tariff/schemas"
)

func TestShare(t *testing.T) {
	data := testdata(t, "litellm_small.json")
	prev, err := ParseLiteLLM(data)
	if err != nil {
		t.Fatal(err)
	}
	// The next list changes one price of azure/gpt-4o and nothing else.
	next, err := ParseLiteLLM(bytes.Replace(data, []byte(`"input_cost_per_token": 2.5e-06`), []byte(`"input_cost_per_token": 2e-06`), 1))
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(prev, next); len(d) != 1 || d[0].Model != "azure/gpt-4o" {
		t.Fatalf("fixture: %+v", d)
	}
	// Readers rate against prev while Share runs: shared entries must not
	// be recompiled under them (the race detector checks).
	b := bookOf(t, prev)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var r Rated
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, mp := range prev.Prices {
				_ = b.Rate(event("", mp.Key, qty{schemas.UnitInput: 10, schemas.UnitOutput: 10}), nil, &r)
			}
		}
	}()
	s, shared, err := Share(prev, next)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if shared != len(next.Prices)-1 {
		t.Errorf("shared %d of %d entries, want all but the changed one", shared, len(next.Prices))
	}
	for _, mp := range s.Prices {
		if same := mp == prev.Get(mp.Key); same == (mp.Key == "azure/gpt-4o") {
			t.Errorf("%s: shared = %v", mp.Key, same)
		}
	}
	if d := Diff(next, s); len(d) != 0 {
		t.Errorf("sharing changed prices: %+v", d)
	}
	var r1, r2 Rated
	for _, mp := range next.Prices {
		ev := event("", mp.Key, qty{schemas.UnitInput: 250_000, schemas.UnitOutput: 1000})
		e1, e2 := bookOf(t, next).Rate(ev, nil, &r1), bookOf(t, s).Rate(ev, nil, &r2)
		if (e1 == nil) != (e2 == nil) || r1.Cost != r2.Cost {
			t.Errorf("%s: %v/%v %s/%s", mp.Key, e1, e2, r1.Cost, r2.Cost)
		}
	}
}

func TestChangeKindText(t *testing.T) {
	for k := ChangeModelAdded; k <= ChangePriceDown; k++ {
		b, _ := k.MarshalText()
		var back ChangeKind
		if err := back.UnmarshalText(b); err != nil || back != k {
			t.Errorf("%s: %v %v", k, back, err)
		}
	}
	var k ChangeKind
	if err := k.UnmarshalText([]byte("price_sideways")); err == nil {
		t.Error("unknown kind accepted")
	}
}
