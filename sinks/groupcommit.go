package sinks

import (
	"errors"
	"sync"
)

// groupCommit lets concurrent writers share one write: a writer that
// arrives while another's write is in flight queues its batch, and the
// next write takes every queued batch at once. Each caller returns when
// the write holding its batch has ended, with that write's error, and
// never earlier: until then the write may still read the batch.
//
// Leadership passes on after every write, so no caller writes the others'
// batches for longer than one write beyond its own. The zero value is
// ready.
type groupCommit struct {
	mu      sync.Mutex
	queue   []*groupWaiter
	leading bool
}

type groupWaiter struct {
	b    *Batch
	done chan error
}

// errLead tells a queued waiter that it writes the next group.
var errLead = errors.New("lead the next write")

// do writes b, alone or with the batches queued beside it, through write.
func (g *groupCommit) do(b *Batch, write func([]*Batch) error) error {
	w := &groupWaiter{b: b, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if g.leading {
		g.mu.Unlock()
		if err := <-w.done; err != errLead {
			return err // written by another caller's write
		}
		g.mu.Lock()
	}
	g.leading = true
	round := g.queue
	g.queue = nil
	g.mu.Unlock()

	batches := make([]*Batch, len(round))
	for i, x := range round {
		batches[i] = x.b
	}
	err := write(batches)

	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- errLead // still queued: it takes the next round, itself included
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	for _, x := range round {
		if x != w {
			x.done <- err
		}
	}
	return err
}
