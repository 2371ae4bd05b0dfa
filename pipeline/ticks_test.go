package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"gopkg.in/yaml.v3"

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// tickHarness drives a processor whose "admin" topic has the command
// format, with alerts and views, in generation gen over the store in dir.
type tickHarness struct {
	*harness
	alerts *memAlerts
	views  *Views
	now    time.Time // the processor's clock
}

func newTickHarness(t *testing.T, dir string, gen int32, now time.Time, log *memLog) *tickHarness {
	t.Helper()
	store, err := OpenStore(StoreConfig{Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if log == nil {
		log = &memLog{}
	}
	h := &tickHarness{
		harness: &harness{src: &fakeSource{}, sink: &memSink{}, dlq: &memDLQ{}, log: log, store: store, stats: &Stats{}},
		alerts:  &memAlerts{}, views: &Views{}, now: now,
	}
	offsets, err := store.NextOffsets(0, []string{"usage", "admin"})
	if err != nil {
		t.Fatal(err)
	}
	deps := Deps{
		Formats:  map[string]string{"usage": "csv", "admin": FormatCommand},
		Decoders: map[string]schemas.Decoder{"csv": csvDecoder{}},
		Sink:     h.sink, DLQ: h.dlq, Log: h.log, Store: store, Stats: h.stats, Logger: zerolog.Nop(),
		Alerts: h.alerts, Views: h.views,
		Now: func() time.Time { return h.now },
	}
	h.p = NewProcessor(Config{RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond}, 0, gen, offsets, fakeRater{}, deps,
		func(map[string]int64) error { return nil })
	return h
}

// apply runs the given batches through the processor.
func (h *tickHarness) apply(t *testing.T, batches ...[]kafka.Message) {
	t.Helper()
	h.src.batches = append(h.src.batches, batches...)
	h.run(t)
}

// admin returns one message of the command topic at offset.
func admin(offset int64, value string) kafka.Message {
	return kafka.Message{Topic: "admin", Offset: offset, Value: []byte(value)}
}

func tick(offset int64, at string) kafka.Message {
	return admin(offset, string(EncodeTick(mustTime(at))))
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func grantCmd(id, amount, at, expires string) string {
	exp := ""
	if expires != "" {
		exp = fmt.Sprintf(`,"expires_at":%q`, expires)
	}
	return fmt.Sprintf(`{"id":%q,"customer_id":"acme","kind":"grant","at":%q,"grant":{"id":%q,"amount":%q%s}}`, id, at, id, amount, exp)
}

// stateOf returns the partition's balance state: accounts, due index and
// periods, key -> value.
func stateOf(t *testing.T, s *Store, partition int) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.DB().View(func(txn *badger.Txn) error {
		for _, kind := range []byte{kindBalance, kindDue, kindPeriod} {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = partKey(nil, kind, partition)
			it := txn.NewIterator(opts)
			for it.Rewind(); it.Valid(); it.Next() {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					it.Close()
					return err
				}
				out[string(it.Item().KeyCopy(nil))] = string(v)
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkDueIndex fails unless the due index holds exactly one entry per
// started account, at its NextChange, and nothing else.
func checkDueIndex(t *testing.T, s *Store, partition int) {
	t.Helper()
	want := map[string]bool{}
	got := map[string]bool{}
	for k, v := range stateOf(t, s, partition) {
		switch k[0] {
		case kindBalance:
			customer := k[5:]
			a := balance.NewAccount(customer)
			if err := a.UnmarshalBinary([]byte(v)); err != nil {
				t.Fatal(err)
			}
			if next := a.NextChange(); !next.IsZero() {
				want[string(dueKey(nil, partition, next, customer))] = true
			}
		case kindDue:
			if v != "" {
				t.Errorf("due entry %q has value %q, want empty", k, v)
			}
			got[k] = true
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("due index %v, want exactly one entry per account at its NextChange: %v", describeDue(got), describeDue(want))
	}
}

func describeDue(keys map[string]bool) []string {
	var out []string
	for k := range keys {
		due := time.Unix(0, int64(binary.BigEndian.Uint64([]byte(k)[5:13]))).UTC()
		out = append(out, k[13:]+"@"+due.Format(time.RFC3339Nano))
	}
	return out
}

// TestTickExpiresGrantWithNoUsage: credit that expires while the customer
// sends nothing reaches zero at its expiry when a tick at or after it is
// applied, with exactly one zero alert; a tick before the expiry does
// nothing, and a tick applied again changes nothing.
func TestTickExpiresGrantWithNoUsage(t *testing.T) {
	h := newTickHarness(t, t.TempDir(), 1, mustTime("2026-11-20T00:00:00Z"), nil)
	h.apply(t, []kafka.Message{admin(0, grantCmd("pack-1", "5", "2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z"))})
	if len(h.alerts.alerts) != 0 {
		t.Fatalf("alerts after the grant: %q, want none", h.alerts.kinds())
	}
	checkDueIndex(t, h.store, 0)

	h.apply(t, []kafka.Message{tick(1, "2026-11-09T23:59:59.999999999Z")})
	if len(h.alerts.alerts) != 0 {
		t.Fatalf("a tick 1ns before the expiry alerted: %q", h.alerts.kinds())
	}
	if e, _ := h.views.Entitlement("acme", mustTime("2026-11-09T00:00:00Z")); e.Remaining != rating.MustAmount("5") {
		t.Fatalf("remaining before expiry %s, want 5", e.Remaining)
	}
	checkDueIndex(t, h.store, 0)

	h.apply(t, []kafka.Message{tick(2, "2026-11-10T00:00:00Z")})
	if len(h.alerts.alerts) != 1 {
		t.Fatalf("alerts after the tick at expiry: %q, want exactly one zero alert", h.alerts.kinds())
	}
	al := h.alerts.alerts[0]
	want := balance.Alert{Key: al.Key, CustomerID: "acme", Kind: balance.AlertZero, Cause: balance.Cause{Kind: balance.CauseExpiry, ID: "pack-1"},
		At: mustTime("2026-11-10T00:00:00Z"), Seq: 1}
	if al.Key == "" || !reflect.DeepEqual(al, want) {
		t.Fatalf("alert %+v, want %+v", al, want)
	}
	a, ok, err := h.store.Account(0, "acme")
	if err != nil || !ok {
		t.Fatalf("Account: %v %v", ok, err)
	}
	if !a.Clock().Equal(mustTime("2026-11-10T00:00:00Z")) || !a.NextChange().Equal(mustTime("2026-12-01T00:00:00Z")) {
		t.Fatalf("clock %s, next change %s; want the expiry and the period end", a.Clock(), a.NextChange())
	}
	checkDueIndex(t, h.store, 0)
	before := stateOf(t, h.store, 0)

	// The same tick again, twice in one batch (a rewrite, a second
	// instance), and a later tick with nothing due: no alert, no change.
	h.apply(t, []kafka.Message{tick(3, "2026-11-10T00:00:00Z"), tick(4, "2026-11-10T00:00:00Z")},
		[]kafka.Message{tick(5, "2026-11-15T00:00:00Z")})
	if len(h.alerts.alerts) != 1 {
		t.Fatalf("alerts after repeated ticks: %q, want still the one", h.alerts.kinds())
	}
	if after := stateOf(t, h.store, 0); !reflect.DeepEqual(after, before) {
		t.Fatalf("a repeated tick, or one with nothing due, changed the state")
	}
	if len(h.dlq.recs) != 0 {
		t.Fatalf("dead letters %+v", h.dlq.recs)
	}
}

// TestTickAfterCommandInSameBatch: a grant and a tick past its expiry in
// one batch: the grant's due-index entry is not written yet when the tick
// comes, and the tick still finds the account. Another account changed in
// the same batch with nothing due is left alone.
func TestTickAfterCommandInSameBatch(t *testing.T) {
	h := newTickHarness(t, t.TempDir(), 1, mustTime("2026-11-20T00:00:00Z"), nil)
	h.apply(t, []kafka.Message{
		admin(0, grantCmd("pack-1", "5", "2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z")),
		admin(1, `{"id":"c-globex","customer_id":"globex","kind":"grant","at":"2026-11-01T00:00:00Z","grant":{"id":"x","amount":"2"}}`),
		tick(2, "2026-11-12T00:00:00Z"),
	})
	if got := h.alerts.kinds(); got != "acme:zero" {
		t.Fatalf("alerts %q, want acme:zero", got)
	}
	acme, _, _ := h.store.Account(0, "acme")
	globex, _, _ := h.store.Account(0, "globex")
	if !acme.Clock().Equal(mustTime("2026-11-12T00:00:00Z")) || !globex.Clock().Equal(mustTime("2026-11-01T00:00:00Z")) {
		t.Fatalf("clocks acme %s, globex %s; want the tick's time for acme only (globex has nothing due)", acme.Clock(), globex.Clock())
	}
	checkDueIndex(t, h.store, 0)
}

// TestTickClosesPeriodAndStoresIt: a period ends with no usage after it;
// the tick closes it and the exact period record is stored and readable.
func TestTickClosesPeriodAndStoresIt(t *testing.T) {
	h := newTickHarness(t, t.TempDir(), 1, mustTime("2026-12-01T00:00:01Z"), nil)
	// Usage is timed 2026-11-01T00:00:00Z (csvDecoder): $0.0001 + $0.0002.
	h.apply(t, append([]kafka.Message{admin(0, grantCmd("pack-1", "0.001", "2026-11-01T00:00:00Z", ""))},
		msgs(0, "e1,acme,m,100", "e2,acme,m,200")...))
	if p, err := h.store.Periods(0, "acme"); err != nil || len(p) != 0 {
		t.Fatalf("periods before the end: %+v %v, want none", p, err)
	}
	h.apply(t, []kafka.Message{tick(1, "2026-12-01T00:00:00Z")})
	got, err := h.store.Periods(0, "acme")
	if err != nil {
		t.Fatal(err)
	}
	want := []balance.PeriodUsage{{
		CustomerID:  "acme",
		Start:       mustTime("2026-11-01T00:00:00Z"),
		End:         mustTime("2026-12-01T00:00:00Z"),
		Grants:      []balance.GrantUsage{{GrantID: "pack-1", Granted: rating.MustAmount("0.001"), Drawn: rating.MustAmount("0.0003"), Remaining: rating.MustAmount("0.0007")}},
		UsageCharge: rating.MustAmount("0.0003"),
		Events:      2,
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stored periods\n %+v\nwant\n %+v", got, want)
	}
	a, _, _ := h.store.Account(0, "acme")
	if last, ok := a.LastPeriod(); !ok || !reflect.DeepEqual(last, want[0]) {
		t.Fatalf("account's last period %+v, want the stored one", last)
	}
	if _, ok, err := h.store.Account(0, "globex"); ok || err != nil {
		t.Fatalf("Account of an unknown customer: %v %v, want false, nil", ok, err)
	}
	if p, ok := h.views.Partition("acme"); !ok || p != 0 {
		t.Fatalf("Views.Partition(acme) = %d %v, want 0 true", p, ok)
	}
	if _, ok := h.views.Partition("globex"); ok {
		t.Fatal("Views.Partition knows a customer with no account")
	}
	checkDueIndex(t, h.store, 0)
}

// TestStoredPeriodsAreBounded: past MaxStoredPeriods the oldest period is
// deleted, whether the periods close one per batch or many in one.
func TestStoredPeriodsAreBounded(t *testing.T) {
	h := newTickHarness(t, t.TempDir(), 1, mustTime("2030-06-01T00:00:00Z"), nil)
	h.apply(t, []kafka.Message{admin(0, grantCmd("pack-1", "1", "2026-11-01T00:00:00Z", ""))})
	// 30 months one tick per batch, then 10 more months in one tick.
	month := mustTime("2026-12-01T00:00:00Z")
	for i := 1; i <= 30; i++ {
		h.apply(t, []kafka.Message{tick(int64(i), month.Format(time.RFC3339))})
		month = month.AddDate(0, 1, 0)
	}
	h.apply(t, []kafka.Message{tick(31, month.AddDate(0, 9, 0).Format(time.RFC3339))})
	got, err := h.store.Periods(0, "acme")
	if err != nil {
		t.Fatal(err)
	}
	// 40 periods closed: Nov 2026 .. Feb 2030; the latest 36 are kept.
	if len(got) != MaxStoredPeriods {
		t.Fatalf("%d periods stored, want %d", len(got), MaxStoredPeriods)
	}
	first, last := mustTime("2027-03-01T00:00:00Z"), mustTime("2030-02-01T00:00:00Z")
	if !got[0].Start.Equal(first) || !got[len(got)-1].Start.Equal(last) {
		t.Fatalf("periods from %s to %s, want %s to %s", got[0].Start, got[len(got)-1].Start, first, last)
	}
	for i := 1; i < len(got); i++ {
		if !got[i].Start.Equal(got[i-1].End) {
			t.Fatalf("period %d starts %s, the previous ended %s", i, got[i].Start, got[i-1].End)
		}
	}
	n := 0
	for k := range stateOf(t, h.store, 0) {
		if k[0] == kindPeriod {
			n++
		}
	}
	if n != MaxStoredPeriods {
		t.Fatalf("%d period keys in state, want %d", n, MaxStoredPeriods)
	}
	checkDueIndex(t, h.store, 0)
}

// TestDueIndexFollowsChanges: grants with and without expiry, a void, a
// scheduled plan change, usage and ticks, for two customers; after each
// batch the due index holds exactly each account's NextChange.
func TestDueIndexFollowsChanges(t *testing.T) {
	h := newTickHarness(t, t.TempDir(), 1, mustTime("2026-11-22T00:00:00Z"), nil)
	plan := `{"id":"pro","version":1,"cycle":{"kind":"monthly"},"fee":"20","allowance":"10"}`
	batches := [][]kafka.Message{
		{admin(0, grantCmd("g1", "1", "2026-11-01T00:00:00Z", "2026-11-05T00:00:00Z")),
			admin(1, grantCmd("g2", "1", "2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z")),
			admin(2, `{"id":"c-globex","customer_id":"globex","kind":"grant","at":"2026-11-01T00:00:00Z","grant":{"id":"x","amount":"2","expires_at":"2026-11-04T00:00:00Z"}}`)},
		{admin(3, `{"id":"v1","customer_id":"acme","kind":"void_grant","at":"2026-11-02T00:00:00Z","grant_id":"g2"}`)},
		{tick(4, "2026-11-04T12:00:00Z")},
		{admin(5, `{"id":"p1","customer_id":"acme","kind":"change_plan","at":"2026-11-06T00:00:00Z","effective_at":"2026-11-20T00:00:00Z","plan":`+plan+`}`)},
		append(msgs(0, "e1,acme,m,100"), tick(6, "2026-11-21T00:00:00Z")),
		{tick(7, "2027-01-15T00:00:00Z"), tick(8, "2027-02-01T00:00:00Z")},
	}
	for i, b := range batches {
		if i == len(batches)-1 {
			h.now = mustTime("2027-02-01T00:00:00Z")
		}
		h.apply(t, b)
		if len(h.dlq.recs) != 0 {
			t.Fatalf("batch %d: dead letters %+v", i, h.dlq.recs)
		}
		checkDueIndex(t, h.store, 0)
	}
	a, _, _ := h.store.Account(0, "acme")
	if a.Plan().ID != "pro" || !a.NextChange().Equal(mustTime("2027-02-20T00:00:00Z")) {
		t.Fatalf("acme on plan %q, next change %s; want pro, 2027-02-20", a.Plan().ID, a.NextChange())
	}
}

// TestTickStateRestoresFromChangelog: the changelog records of a run with
// ticks rebuild the same accounts, due index and periods in a fresh store,
// where a processor of the next generation carries on: its tick finds the
// restored due entry and alerts.
func TestTickStateRestoresFromChangelog(t *testing.T) {
	now := mustTime("2027-01-10T00:00:00Z")
	h := newTickHarness(t, t.TempDir(), 1, mustTime("2026-11-02T00:00:00Z"), nil)
	h.apply(t,
		[]kafka.Message{admin(0, grantCmd("pack-1", "0.001", "2026-11-01T00:00:00Z", "")),
			admin(1, grantCmd("pack-2", "1", "2026-11-01T00:00:00Z", "2027-01-05T00:00:00Z"))},
		msgs(0, "e1,acme,m,100"), // drawn from pack-2, which expires first
	)
	h.now = now
	h.apply(t,
		[]kafka.Message{tick(2, "2026-12-01T00:00:00Z")},
		[]kafka.Message{tick(3, "2027-01-01T00:00:00Z")},
	)
	orig := stateOf(t, h.store, 0)
	if len(h.alerts.alerts) != 0 {
		t.Fatalf("alerts %q before the expiry", h.alerts.kinds())
	}

	dir := t.TempDir()
	fresh, err := OpenStore(StoreConfig{Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	pos := ChangelogPos{}
	for off, rec := range h.log.records {
		pos, err = replayRecord(pos, int64(off), rec, nil, func(gen int32, muts []Mutation) error {
			return fresh.Apply(0, muts, ChangelogPos{Next: int64(off) + 1, Generation: gen})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	restored := stateOf(t, fresh, 0)
	if !reflect.DeepEqual(restored, orig) {
		t.Fatalf("restored state has %d keys, the original %d, or values differ", len(restored), len(orig))
	}
	p1, _ := h.store.Periods(0, "acme")
	p2, err := fresh.Periods(0, "acme")
	if err != nil || len(p2) != 2 || !reflect.DeepEqual(p1, p2) {
		t.Fatalf("restored periods %+v (%v), want the original two %+v", p2, err, p1)
	}
	fresh.Close()

	h2 := newTickHarness(t, dir, 2, now, h.log)
	h2.apply(t, []kafka.Message{tick(4, "2027-01-05T00:00:00Z")})
	// pack-2's 0.9999 expired; pack-1 is untouched: no zero alert, and
	// the due entry moved to the period end.
	a, _, _ := h2.store.Account(0, "acme")
	if e := a.View(); e.Entitlement(now).Remaining != rating.MustAmount("0.001") {
		t.Fatalf("remaining after the expiry %s, want 0.001", e.Entitlement(now).Remaining)
	}
	if len(h2.alerts.alerts) != 0 || !a.NextChange().Equal(mustTime("2027-02-01T00:00:00Z")) {
		t.Fatalf("alerts %q, next change %s; want none and the period end", h2.alerts.kinds(), a.NextChange())
	}
	if !a.Clock().Equal(mustTime("2027-01-05T00:00:00Z")) {
		t.Fatalf("clock %s, want the tick's time", a.Clock())
	}
	checkDueIndex(t, h2.store, 0)
}

// TestRestoredGenerationAlertsOnTick: the zero alert of an expiry comes
// from the next owner, after a restore, exactly once.
func TestRestoredGenerationAlertsOnTick(t *testing.T) {
	now := mustTime("2026-11-20T00:00:00Z")
	h := newTickHarness(t, t.TempDir(), 1, now, nil)
	h.apply(t, []kafka.Message{admin(0, grantCmd("pack-1", "5", "2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z"))})
	dir := t.TempDir()
	fresh, err := OpenStore(StoreConfig{Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for off, rec := range h.log.records {
		if _, err := replayRecord(ChangelogPos{}, int64(off), rec, nil, func(gen int32, muts []Mutation) error {
			return fresh.Apply(0, muts, ChangelogPos{Next: int64(off) + 1, Generation: gen})
		}); err != nil {
			t.Fatal(err)
		}
	}
	fresh.Close()
	h2 := newTickHarness(t, dir, 2, now, h.log)
	h2.apply(t, []kafka.Message{tick(1, "2026-11-10T00:00:00Z")}, []kafka.Message{tick(2, "2026-11-11T00:00:00Z")})
	if got := h2.alerts.kinds(); got != "acme:zero" {
		t.Fatalf("alerts of the new owner %q, want one acme:zero", got)
	}
}

func TestBadTicksAreDeadLettered(t *testing.T) {
	h := newTickHarness(t, t.TempDir(), 1, mustTime("2026-11-20T00:00:00Z"), nil)
	h.apply(t, []kafka.Message{
		admin(0, `{"kind":"tick","at":"2026-11-20T00:00:00Z","customer_id":"acme"}`),
		admin(1, `{"kind":"tick"}`),
		admin(2, `{"kind":"tick","at":"2026-11-20T00:05:00.000000001Z"}`), // 1ns beyond the 5 minutes allowed
		admin(3, `{"kind":"tick","at":"2026-11-20T00:00:00Z","extra":1}`),
		admin(4, `{"kind":"tick","at":"2026-11-20T00:05:00Z"}`), // just within
	})
	want := []string{"tick.customer_id", "tick.at: missing", "ahead of this processor's clock", `unknown field "extra"`}
	if len(h.dlq.recs) != len(want) {
		t.Fatalf("%d dead letters, want %d: %+v", len(h.dlq.recs), len(want), h.dlq.recs)
	}
	for i, w := range want {
		if r := h.dlq.recs[i]; r.Decoder != "command" || !strings.Contains(r.Reason, w) {
			t.Errorf("dead letter %d: %s %q, want stage command naming %q", i, r.Decoder, r.Reason, w)
		}
	}
}

func TestEncodeTick(t *testing.T) {
	at := time.Date(2026, 11, 27, 6, 51, 20, 123456789, time.FixedZone("x", 3600))
	got := string(EncodeTick(at))
	if got != `{"kind":"tick","at":"2026-11-27T05:51:20.123456789Z"}` {
		t.Fatalf("EncodeTick = %s", got)
	}
	back, isTick, refused := parseTick([]byte(got), at)
	if !isTick || refused != nil || !back.Equal(at) {
		t.Fatalf("parseTick(%s) = %s %v %v", got, back, isTick, refused)
	}
	if _, isTick, _ := parseTick([]byte(grantCmd("g", "1", "2026-11-01T00:00:00Z", "")), at); isTick {
		t.Fatal("a grant command was taken for a tick")
	}
}

func TestRecordWithDeletesRoundTrip(t *testing.T) {
	muts := []Mutation{{Key: []byte("a"), Value: []byte("1"), ExpiresAt: 42}, {Key: []byte("gone"), Delete: true}, {Key: []byte("e"), Value: []byte{}}}
	rec := encodeRecord(nil, 9, muts)
	if rec[1] != recordVersionFlags {
		t.Fatalf("record version %d, want %d for a record with a delete", rec[1], recordVersionFlags)
	}
	gen, got, err := decodeRecord(rec, nil)
	if err != nil || gen != 9 || len(got) != 3 || !got[1].Delete || got[0].Delete || string(got[1].Key) != "gone" || string(got[0].Value) != "1" || got[0].ExpiresAt != 42 {
		t.Fatalf("round trip: gen %d muts %+v err %v", gen, got, err)
	}
	for n := 0; n < len(rec); n++ {
		if _, _, err := decodeRecord(rec[:n], nil); err == nil {
			t.Fatalf("truncated record of %d bytes accepted", n)
		}
	}
	bad := bytes.Clone(rec)
	bad[len(bad)-1] = 0x80 // an unknown flag
	if _, _, err := decodeRecord(bad, nil); err == nil {
		t.Fatal("a record with an unknown flag was accepted")
	}
	if v1 := encodeRecord(nil, 9, muts[:1]); v1[1] != recordVersion {
		t.Fatalf("a record without deletes has version %d, want %d (readable by older binaries)", v1[1], recordVersion)
	}

	// Store.Apply honours the delete.
	s, err := OpenStore(StoreConfig{Dir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Apply(0, []Mutation{{Key: []byte("gone"), Value: []byte("x")}}, ChangelogPos{Next: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(0, got, ChangelogPos{Next: 2}); err != nil {
		t.Fatal(err)
	}
	err = s.DB().View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte("gone"))
		return err
	})
	if !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("deleted key: %v, want not found", err)
	}
}

// fakeTicks records ticks; it fails for partitions in fail.
type fakeTicks struct {
	writes map[int][]string
	fail   map[int]bool
}

func (f *fakeTicks) WriteTick(_ context.Context, p int, v []byte) error {
	if f.fail[p] {
		return errors.New("broker down")
	}
	f.writes[p] = append(f.writes[p], string(v))
	return nil
}

func TestTickerWritesToOwnedPartitions(t *testing.T) {
	owned := []int{0, 2}
	w := &fakeTicks{writes: map[int][]string{}, fail: map[int]bool{}}
	tk := NewTicker(time.Millisecond, func() []int { return owned }, w, zerolog.Nop())
	tk.now = func() time.Time { return mustTime("2026-11-27T06:00:00.5Z") }
	if n, err := tk.Tick(context.Background()); n != 2 || err != nil {
		t.Fatalf("Tick = %d, %v; want 2, nil", n, err)
	}
	want := `{"kind":"tick","at":"2026-11-27T06:00:00.5Z"}`
	if !reflect.DeepEqual(w.writes, map[int][]string{0: {want}, 2: {want}}) {
		t.Fatalf("writes %v", w.writes)
	}
	// A partition that fails does not stop the others.
	owned = []int{1, 3}
	w.fail[1] = true
	if n, err := tk.Tick(context.Background()); n != 1 || err == nil {
		t.Fatalf("Tick = %d, %v; want 1 and the error", n, err)
	}
	if len(w.writes[3]) != 1 {
		t.Fatalf("partition 3 got %v", w.writes[3])
	}

	// Run ticks until its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	w2 := &countTicks{n: make(chan int, 100)}
	tk2 := NewTicker(time.Millisecond, func() []int { return []int{5} }, w2, zerolog.Nop())
	done := make(chan error)
	go func() { done <- tk2.Run(ctx) }()
	for range 3 {
		select {
		case p := <-w2.n:
			if p != 5 {
				t.Fatalf("tick to partition %d, want 5", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run wrote no tick in 10s at a 1ms interval")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// countTicks reports each tick's partition on a channel.
type countTicks struct{ n chan int }

func (c *countTicks) WriteTick(ctx context.Context, p int, _ []byte) error {
	select {
	case c.n <- p:
	case <-ctx.Done():
	}
	return nil
}

func TestTickerFor(t *testing.T) {
	off := time.Duration(0)
	if tk := TickerFor(Config{TickInterval: &off}, map[string]string{"c": FormatCommand}, []string{"x:1"}, nil, nil, zerolog.Nop()); tk != nil {
		t.Fatal("a ticker with tick_interval 0")
	}
	if tk := TickerFor(Config{}, map[string]string{"u": "gateway"}, []string{"x:1"}, nil, nil, zerolog.Nop()); tk != nil {
		t.Fatal("a ticker with no command topic")
	}
	tk := TickerFor(Config{}, map[string]string{"u": "gateway", "zcmd": FormatCommand, "acmd": FormatCommand}, []string{"x:1"}, nil, nil, zerolog.Nop())
	if tk == nil || tk.interval != DefaultTickInterval || tk.w.(*KafkaTicks).topic != "acmd" {
		t.Fatalf("ticker %+v, want every 5s to acmd", tk)
	}
}

func TestTickIntervalConfig(t *testing.T) {
	var c struct {
		Pipeline Config `yaml:"pipeline"`
	}
	if err := yaml.Unmarshal([]byte("pipeline:\n  tick_interval: 250ms\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Pipeline.TickInterval == nil || *c.Pipeline.TickInterval != 250*time.Millisecond || c.Pipeline.Validate() != nil {
		t.Fatalf("tick_interval 250ms read as %v (%v)", c.Pipeline.TickInterval, c.Pipeline.Validate())
	}
	var d Config
	d.SetDefaults()
	if *d.TickInterval != 5*time.Second {
		t.Fatalf("default tick_interval %s, want 5s", *d.TickInterval)
	}
	for _, bad := range []time.Duration{-time.Second, 10 * time.Millisecond} {
		c := Config{TickInterval: &bad}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "pipeline.tick_interval") {
			t.Errorf("tick_interval %s: %v, want an error naming pipeline.tick_interval", bad, err)
		}
	}
	zero := time.Duration(0)
	if err := (&Config{TickInterval: &zero}).Validate(); err != nil {
		t.Errorf("tick_interval 0 (off): %v", err)
	}
}
