package pipeline

import (
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/rating"
)

var viewsT0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// viewOf builds an account through the engine: a plan, and grants of 1
// USD each (the first expires on day 10), then returns its view.
func viewOf(t testing.TB, customer string, grants int) balance.View {
	t.Helper()
	a := balance.NewAccount(customer)
	var fx balance.Effects
	apply := func(c *balance.Command) {
		t.Helper()
		c.CustomerID = customer
		fx.Reset()
		if _, err := a.Apply(c, &fx); err != nil {
			t.Fatalf("%s %s: %v", customer, c.ID, err)
		}
	}
	apply(&balance.Command{ID: "plan", Kind: balance.CommandChangePlan, At: viewsT0,
		Plan: &balance.Plan{ID: "sub", Version: 3, Allowance: rating.MustAmount("5"), Overage: balance.OverageBlock}})
	for i := range grants {
		g := &balance.Grant{ID: fmt.Sprint("g", i), Amount: rating.MustAmount("1"), Currency: "USD"}
		if i == 0 {
			g.ExpiresAt = viewsT0.AddDate(0, 0, 9)
		}
		apply(&balance.Command{ID: fmt.Sprint("grant-", i), Kind: balance.CommandGrant, At: viewsT0, Grant: g})
	}
	return a.View()
}

func TestViewsKeepsPackedAndWholeViews(t *testing.T) {
	var v Views
	// 0 to 2 credits pack; 3 and 4 are kept whole.
	for n := range 5 {
		v.store(n%2, fmt.Sprint("cust-", n), viewOf(t, fmt.Sprint("cust-", n), n))
	}
	for n := range 5 {
		c := fmt.Sprint("cust-", n)
		want := viewOf(t, c, n)
		got, ok := v.Get(c)
		if !ok {
			t.Fatalf("%s unknown", c)
		}
		if id, ver := got.Plan(); id != "sub" || ver != 3 {
			t.Errorf("%s: plan %q v%d, want sub v3", c, id, ver)
		}
		if !got.Clock().Equal(want.Clock()) {
			t.Errorf("%s: clock %s, want %s", c, got.Clock(), want.Clock())
		}
		if p, ok := v.Partition(c); !ok || p != n%2 {
			t.Errorf("%s: partition %d %v, want %d", c, p, ok, n%2)
		}
		for _, day := range []int{0, 9, 10, 40} {
			at := viewsT0.AddDate(0, 0, day)
			e, known := v.Entitlement(c, at)
			if !known || e != want.Entitlement(at) || e != got.Entitlement(at) {
				t.Errorf("%s day %d: %+v %v, want %+v", c, day, e, known, want.Entitlement(at))
			}
		}
		// 5 USD allowance, n USD of credit of which 1 expires on day 10.
		e, _ := v.Entitlement(c, viewsT0.AddDate(0, 0, 1))
		if e.Remaining != rating.MustAmount(fmt.Sprint(5+n)) {
			t.Errorf("%s: remaining %s, want %d", c, e.Remaining, 5+n)
		}
	}
	if _, known := v.Entitlement("nobody", viewsT0); known {
		t.Error("a customer never stored is known")
	}
	if _, ok := v.Partition("nobody"); ok {
		t.Error("a customer never stored has a partition")
	}

	// A whole view replaced by one that packs leaves no whole copy behind.
	v.store(1, "cust-4", viewOf(t, "cust-4", 1))
	if e, _ := v.Entitlement("cust-4", viewsT0.AddDate(0, 0, 1)); e.Remaining != rating.MustAmount("6") {
		t.Errorf("cust-4 after the update: remaining %s, want 6", e.Remaining)
	}
	whole := 0
	for i := range v.shards {
		whole += len(v.shards[i].whole)
	}
	if whole != 1 {
		t.Errorf("%d whole views kept, want 1 (cust-3)", whole)
	}

	seen := map[string]bool{}
	v.Range(func(c string, view balance.View) bool {
		if id, _ := view.Plan(); id != "sub" {
			t.Errorf("Range: %s has plan %q", c, id)
		}
		seen[c] = true
		return true
	})
	if len(seen) != 5 {
		t.Errorf("Range saw %d customers, want 5: %v", len(seen), seen)
	}
	calls := 0
	v.Range(func(string, balance.View) bool { calls++; return false })
	if calls != 1 {
		t.Errorf("Range went on for %d calls after false", calls)
	}

	v.forget(0) // cust-0, 2 (and 4 moved to partition 1)
	for n := range 5 {
		c := fmt.Sprint("cust-", n)
		_, ok := v.Get(c)
		if want := n%2 == 1 || n == 4; ok != want {
			t.Errorf("after forget(0): %s known %v, want %v", c, ok, want)
		}
	}
	v.forget(1)
	for i := range v.shards {
		if v.shards[i].index.live+len(v.shards[i].index.entries)+len(v.shards[i].whole)+len(v.shards[i].chunks) != 0 {
			t.Fatalf("shard %d not empty after forgetting every partition", i)
		}
	}
}

// Range's callback may use the views: no lock is held while it runs.
func TestViewsRangeMayUseViews(t *testing.T) {
	var v Views
	for n := range 100 {
		v.store(0, fmt.Sprint("c", n), viewOf(t, "c", 1))
	}
	n := 0
	v.Range(func(c string, _ balance.View) bool {
		if _, ok := v.Get(c); !ok {
			t.Errorf("%s unknown inside Range", c)
		}
		v.store(1, c, viewOf(t, "c", 1))
		n++
		return true
	})
	if n != 100 {
		t.Errorf("Range saw %d, want 100", n)
	}
}

func TestViewsEntitlementDoesNotAllocate(t *testing.T) {
	var v Views
	v.store(0, "packed", viewOf(t, "packed", 2))
	v.store(0, "whole", viewOf(t, "whole", 4))
	now := viewsT0.AddDate(0, 0, 1)
	for _, c := range []string{"packed", "whole", "nobody"} {
		if n := testing.AllocsPerRun(1000, func() { v.Entitlement(c, now) }); n != 0 {
			t.Errorf("%s: %v allocations per Entitlement, want 0", c, n)
		}
	}
	if n := testing.AllocsPerRun(1000, func() { v.Partition("packed") }); n != 0 {
		t.Errorf("%v allocations per Partition, want 0", n)
	}
}

func TestViewsLayout(t *testing.T) {
	if s := unsafe.Sizeof(viewSlot{}); s != 8 {
		t.Errorf("viewSlot is %d bytes, want 8", s)
	}
	if s := unsafe.Sizeof(viewShard{}); s%cacheLine != 0 {
		t.Errorf("viewShard is %d bytes, want whole cache lines (of %d)", s, cacheLine)
	}
}

// Writers and readers on many goroutines, for the race detector.
func TestViewsConcurrent(t *testing.T) {
	var v Views
	views := []balance.View{viewOf(t, "c", 1), viewOf(t, "c", 4)}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				c := fmt.Sprint("c", i%300)
				switch w {
				case 0:
					v.store(i%3, c, views[i%2])
				case 1:
					if i%500 == 0 {
						v.forget(i % 3)
					}
					v.Range(func(string, balance.View) bool { return i%7 != 0 })
				default:
					if e, known := v.Entitlement(c, viewsT0); known && !e.Allowed {
						t.Errorf("%s: %+v", c, e)
					}
					v.Get(c)
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkViewsEntitlement(b *testing.B) {
	var v Views
	const n = 100_000
	packed, whole := viewOf(b, "c", 1), viewOf(b, "c", 4)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("customer-", i)
		view := packed
		if i%100 == 0 {
			view = whole
		}
		v.store(i%4, ids[i], view)
	}
	now := viewsT0.AddDate(0, 0, 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, known := v.Entitlement(ids[(i*7919)%n], now); !known {
			b.Fatal("unknown")
		}
	}
}

// Slots freed by forget, or by a view that stops packing, are reused.
func TestViewsReuseSlots(t *testing.T) {
	var v Views
	small, big := viewOf(t, "c", 1), viewOf(t, "c", 3)
	chunks := func() (n int) {
		for i := range v.shards {
			n += len(v.shards[i].chunks)
		}
		return n
	}
	for i := range 5000 {
		v.store(i%2, fmt.Sprint("c", i), small)
	}
	before := chunks()
	v.forget(0)
	for i := range 5000 {
		if i%2 == 0 {
			v.store(0, fmt.Sprint("c", i), small)
		}
	}
	if after := chunks(); after != before {
		t.Errorf("%d chunks after forget and store again, want %d", after, before)
	}
	at := viewsT0.AddDate(0, 0, 1)
	for i := range 5000 {
		c := fmt.Sprint("c", i)
		v.store(i%2, c, big) // whole: the packed slot is freed
		v.store(i%2, c, small)
		v.store(i%2, fmt.Sprint("d", i), small) // takes the freed slot
		if e, _ := v.Entitlement(c, at); e.Remaining != rating.MustAmount("6") {
			t.Fatalf("%s: remaining %s, want 6", c, e.Remaining)
		}
	}
	if after := chunks(); after > 2*before+viewShards {
		t.Errorf("%d chunks for 10000 views, want at most %d", after, 2*before+viewShards)
	}
}
