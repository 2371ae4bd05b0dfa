package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/bench/loadgen"
)

// accountPhase is the building of every customer's account before a
// throughput run with balances.
type accountPhase struct {
	cmdTopic, alertTopic string
	stateDir             string // Badger state with the accounts; the caller removes it
	grants               int
	publish              time.Duration // producing the grant commands
	wall                 time.Duration // tariff start until every command was committed
	cpu                  time.Duration
	rss                  int64 // KiB, peak of the applying process
}

// buildAccounts gives every customer of g's stream (0 to o.customers-1) an
// account the way tariff's users do: one grant command per customer on a
// command topic co-partitioned with usage, applied by `tariff run`. The
// applying process reads only the command topic, so none of the usage
// stream is consumed yet; it is stopped once every command is committed,
// and its state directory (every account, plus the group's committed
// command offsets in Kafka) is what the measured process starts from. A
// grant the pipeline refused would be on the dead-letter topic: the phase
// fails unless that topic is still empty.
func buildAccounts(ctx context.Context, o options, name string, topics loadgen.Topics, g *loadgen.Generator, at time.Time) (accountPhase, error) {
	a := accountPhase{cmdTopic: name + ".commands", alertTopic: name + ".alerts", grants: o.customers}
	if err := createTopics(ctx, o.broker, o.partitions, nil, a.cmdTopic, a.alertTopic); err != nil {
		return a, err
	}
	start := time.Now()
	if err := publishGrants(ctx, o.broker, a.cmdTopic, g, o.customers, o.balanceGrant, at); err != nil {
		return a, err
	}
	a.publish = time.Since(start)
	dir, err := os.MkdirTemp("", "tariff-e2e-accounts")
	if err != nil {
		return a, err
	}
	a.stateDir = dir
	tr, err := startTariff(o, tariffSpec{group: name, topics: topics, noUsage: true,
		extraTopics: fmt.Sprintf("    %s: command\n", a.cmdTopic), alerts: a.alertTopic, stateDir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return a, err
	}
	defer tr.stop()
	if err := tr.waitCaughtUp(ctx, o.broker, name, []string{a.cmdTopic}, 15*time.Minute); err != nil {
		os.RemoveAll(dir)
		return a, fmt.Errorf("applying %d grant commands: %w", o.customers, err)
	}
	a.wall = time.Since(tr.started)
	a.cpu = cpuTime(tr.cmd.Process.Pid)
	a.rss = max(tr.rss, peakRSS(tr.cmd.Process.Pid))
	tr.stop()
	n, err := topicMessages(ctx, o.broker, topics.DeadLetter)
	if err != nil {
		os.RemoveAll(dir)
		return a, err
	}
	if n != 0 {
		os.RemoveAll(dir)
		return a, fmt.Errorf("%d of the %d grant commands were dead-lettered on %s: every customer must have an account", n, o.customers, topics.DeadLetter)
	}
	o.logf("accounts: %d grants published in %s, applied in %s (%.1f CPU s, peak RSS %d MiB)\n",
		a.grants, a.publish.Round(time.Millisecond), a.wall.Round(time.Millisecond), a.cpu.Seconds(), a.rss/1024)
	return a, nil
}

// topicMessages returns how many messages topic holds (the sum of its
// partitions' end offsets; nothing here deletes records).
func topicMessages(ctx context.Context, broker, topic string) (int64, error) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 10 * time.Second, Transport: tr}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, t := range md.Topics {
		if t.Error != nil {
			return 0, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			req.Topics[t.Name] = append(req.Topics[t.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	res, err := c.ListOffsets(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	var n int64
	for _, pos := range res.Topics {
		for _, po := range pos {
			if po.Error != nil {
				return 0, fmt.Errorf("end offset of %s/%d: %w", topic, po.Partition, po.Error)
			}
			n += po.LastOffset
		}
	}
	return n, nil
}
