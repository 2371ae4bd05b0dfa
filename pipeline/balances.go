package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/sinks"
)

// The balance stage keeps every customer's account (plan, grants, period
// usage, alert state) in the state of the partition that owns the
// customer, next to the idempotency keys: usage and admin commands reach
// it in partition order, and its changes travel in the same changelog
// record and Badger transaction as the rest of the batch, so an account
// is changed exactly once by each event or command, whatever fails.
//
// State key: 'b' p(4) customer -> balance.Account (its binary form).
const kindBalance byte = 'b'

// FormatCommand is the input format of admin commands (grants, top-ups,
// voids, plan changes, thresholds, pauses): balance.Command as JSON, keyed
// by customer id on a topic co-partitioned with usage.
const FormatCommand = "command"

// Alerts stores balance alerts durably (a Kafka topic); webhooks are
// delivered from there.
type Alerts interface {
	WriteAlerts(ctx context.Context, alerts []balance.Alert) error
}

// Views holds, per customer, an immutable snapshot of the account as last
// committed, for entitlement checks that must answer from memory. Only
// the customers of partitions this instance owns are present.
type Views struct{ m sync.Map }

// Get returns the customer's last committed view.
func (v *Views) Get(customer string) (balance.View, bool) {
	x, ok := v.m.Load(customer)
	if !ok {
		return balance.View{}, false
	}
	return x.(balance.View), true
}

type balances struct {
	partition int
	accounts  map[string]*balance.Account // loaded this generation: committed state plus the batch in hand
	dirty     []string
	isDirty   map[string]bool
	fx        balance.Effects
	key       []byte
}

func newBalances(partition int) *balances {
	return &balances{partition: partition, accounts: make(map[string]*balance.Account), isDirty: make(map[string]bool)}
}

func balanceKey(dst []byte, partition int, customer string) []byte {
	return append(partKey(dst, kindBalance, partition), customer...)
}

// account returns the customer's account, loading it from state the first
// time this processor sees the customer.
func (b *balances) account(txn *badger.Txn, customer string) (*balance.Account, error) {
	if a := b.accounts[customer]; a != nil {
		return a, nil
	}
	a := balance.NewAccount(customer)
	b.key = balanceKey(b.key, b.partition, customer)
	it, err := txn.Get(b.key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("read account of %s: %w", customer, err)
	default:
		if err := it.Value(a.UnmarshalBinary); err != nil {
			return nil, fmt.Errorf("read account of %s: %w", customer, err)
		}
	}
	b.accounts[customer] = a
	return a, nil
}

func (b *balances) touch(customer string) {
	if !b.isDirty[customer] {
		b.isDirty[customer] = true
		b.dirty = append(b.dirty, customer)
	}
}

// usage applies rated events, in order. Their preconditions (customer,
// time, non-negative charge) were validated before rating, so an error
// here is a broken invariant.
func (b *balances) usage(txn *badger.Txn, events []sinks.RatedEvent) error {
	for i := range events {
		a, err := b.account(txn, events[i].Event.CustomerID)
		if err != nil {
			return err
		}
		if err := a.ApplyUsage(&events[i], &b.fx); err != nil {
			return fmt.Errorf("BUG: balance of validated event: %w", err)
		}
		b.touch(events[i].Event.CustomerID)
	}
	return nil
}

// command decodes and applies one admin command message. refused says why
// the command itself is refused (for the dead-letter topic; nothing
// changed); err is a failure to read state, which must stop the batch
// rather than dead-letter a good command.
func (b *balances) command(txn *badger.Txn, msg []byte) (refused, err error) {
	var c balance.Command
	if err := json.Unmarshal(msg, &c); err != nil {
		return fmt.Errorf("command: %w", err), nil
	}
	if err := c.Validate(); err != nil {
		return err, nil
	}
	a, err := b.account(txn, c.CustomerID)
	if err != nil {
		return nil, err
	}
	// Apply validates before it changes anything, so a refused command
	// leaves the account as it was.
	changed, err := a.Apply(&c, &b.fx)
	if err != nil {
		return err, nil
	}
	if changed {
		b.touch(c.CustomerID)
	}
	return nil, nil
}

// flush appends the changed accounts to muts and returns the batch's
// alerts.
func (b *balances) flush(muts []Mutation) []Mutation {
	for _, c := range b.dirty {
		muts = append(muts, Mutation{Key: balanceKey(nil, b.partition, c), Value: b.accounts[c].AppendBinary(nil)})
	}
	return muts
}

// maxCachedAccounts bounds the accounts a processor keeps loaded between
// batches; past it they are dropped (their state is in Badger) rather
// than let memory grow with the customer count.
const maxCachedAccounts = 50_000

// committed publishes the changed accounts' views once the batch is
// durable, and forgets the batch.
func (b *balances) committed(views *Views) {
	if views != nil {
		for _, c := range b.dirty {
			views.m.Store(c, b.accounts[c].View())
		}
	}
	b.reset()
	if len(b.accounts) > maxCachedAccounts {
		clear(b.accounts)
	}
}

func (b *balances) reset() {
	clear(b.isDirty)
	b.dirty = b.dirty[:0]
	b.fx.Reset()
}

// Entitlement answers whether the customer may use more, from the view
// committed last; known is false for a customer this instance has no
// account for (never seen, or owned by another instance's partitions).
func (v *Views) Entitlement(customer string, now time.Time) (e balance.Entitlement, known bool) {
	view, ok := v.Get(customer)
	if !ok {
		return balance.Entitlement{}, false
	}
	return view.Entitlement(now), true
}

// Range calls fn for every customer with a committed account here, in no
// particular order, until fn returns false.
func (v *Views) Range(fn func(customer string, view balance.View) bool) {
	v.m.Range(func(k, x any) bool { return fn(k.(string), x.(balance.View)) })
}
