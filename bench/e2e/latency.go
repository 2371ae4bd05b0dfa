package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/bench/accounts"
	"github.com/tariff-dev/tariff/bench/loadgen"
	"github.com/tariff-dev/tariff/sinks"
)

// latencyResult is the fixed-rate run: produce-to-queryable and
// produce-to-alert latency.
type latencyResult struct {
	rate           float64 // target, messages per second
	messages       int64
	fresh          int64 // messages whose events are billable (not duplicates, not malformed)
	events         int64
	grants         int
	produceElapsed time.Duration
	wall           time.Duration // first produce until the group committed everything
	cpu            time.Duration // tariff's, from first produce until then
	customers      int           // customers with a billed event in the stream: each must get one zero alert
	rss            int64         // KiB

	queryable    []time.Duration // per fresh message, sorted
	unattributed int64           // fresh messages never seen in ClickHouse before the wait ended
	polls        int
	pollMax      time.Duration // slowest poll query
	pollEvery    time.Duration

	alertsTotal   int64
	alertsMatched int64            // caused by a usage event this run produced
	alertKinds    map[string]int64 // of the matched ones
	alertAppend   []time.Duration  // broker append time of the alert - produce time of its cause, sorted
	alertRecv     []time.Duration  // reader's receipt time - produce time, sorted
}

// produced is one message the fixed-rate producer handed to the client.
type produced struct {
	topic     string
	at        time.Time // handed to the Kafka client (the record's timestamp)
	partition int
	offset    int64
	acked     bool
	fresh     bool
}

type tp struct {
	topic     string
	partition int
}

// observation: at time at, a poll saw max(kafka_offset) = max.
type observation struct {
	max int64
	at  time.Time
}

// latencyRun publishes a grant per customer on a command topic, starts
// tariff, waits until the grants are applied, then produces a loadgen
// stream at a fixed rate while one goroutine polls ClickHouse for the
// highest offset written per topic and partition and others read the
// alerts topic. Each customer's grant is tiny, so the customer's first
// billed event exhausts it and tariff emits one zero-balance alert whose
// cause is that event's id.
func latencyRun(ctx context.Context, o options, rate float64) (latencyResult, error) {
	res := latencyResult{rate: rate, pollEvery: o.poll, alertKinds: map[string]int64{}}
	name := fmt.Sprintf("lat%d", time.Now().UnixNano()/int64(time.Millisecond))
	topics := loadgen.Topics{Gateway: name + ".gw", Partner: name + ".partner", Meter: name + ".meter", DeadLetter: name + ".dlq"}
	cmdTopic, alertTopic := name+".commands", name+".alerts"
	inputs := []string{topics.Gateway, topics.Partner, topics.Meter}
	if err := createTopics(ctx, o.broker, o.partitions, nil, topics.Gateway, topics.Partner, topics.Meter, topics.DeadLetter, cmdTopic); err != nil {
		return res, err
	}
	// The broker stamps each alert when it appends it, whatever the
	// writer set: that instant is "the alert was emitted".
	if err := createTopics(ctx, o.broker, o.partitions, []kafka.ConfigEntry{{ConfigName: "message.timestamp.type", ConfigValue: "LogAppendTime"}}, alertTopic); err != nil {
		return res, err
	}
	cfg := o.streamConfig(o.latencyEvents, topics)
	g, err := loadgen.New(cfg)
	if err != nil {
		return res, err
	}

	// Issued a day before the stream's first event (lateness reaches
	// back 6h).
	if err := publishGrants(ctx, o.broker, cmdTopic, g, o.customers, o.grant, cfg.Start.Add(-24*time.Hour)); err != nil {
		return res, err
	}
	res.grants = o.customers

	extra := fmt.Sprintf("    %s: command\n", cmdTopic)
	tr, err := startTariff(o, tariffSpec{group: name, topics: topics, extraTopics: extra, alerts: alertTopic})
	if err != nil {
		return res, err
	}
	defer tr.stop()
	if err := tr.waitCaughtUp(ctx, o.broker, name, []string{cmdTopic}, 2*time.Minute); err != nil {
		return res, fmt.Errorf("applying the grant commands: %w", err)
	}
	conn, err := sinks.OpenClickHouse(ctx, sinks.ClickHouseConfig{Addr: o.clickhouse, Database: name})
	if err != nil {
		return res, err
	}
	defer conn.Close()

	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	var wg sync.WaitGroup
	pl := &poller{conn: conn, every: o.poll, topics: inputs, seen: map[tp][]observation{}}
	wg.Add(1)
	go func() { defer wg.Done(); pl.run(bg) }()
	ar := &alertReader{}
	for p := range o.partitions {
		wg.Add(1)
		go func() { defer wg.Done(); ar.read(bg, o.broker, alertTopic, p) }()
	}

	// Fixed-rate producer.
	var (
		mu      sync.Mutex
		recs    []produced
		prodErr error
		causeAt = map[string]time.Time{} // event id -> produce time of its message
	)
	wt := &kafka.Transport{}
	defer wt.CloseIdleConnections()
	w := &kafka.Writer{
		Addr: kafka.TCP(o.broker), Transport: wt, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		// A short batch timeout: at a fixed rate, waiting to fill a batch
		// would be latency added by the benchmark, not by tariff.
		BatchSize: 1000, BatchTimeout: time.Millisecond, Async: true,
		Completion: func(msgs []kafka.Message, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && prodErr == nil {
				prodErr = fmt.Errorf("produce %d messages to %s/%d: %w", len(msgs), msgs[0].Topic, msgs[0].Partition, err)
			}
			for i := range msgs {
				r := &recs[msgs[i].WriterData.(int)]
				r.partition, r.offset, r.acked = msgs[i].Partition, msgs[i].Offset, err == nil
			}
		},
	}
	var m loadgen.Message
	batch := make([]kafka.Message, 0, 64)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := w.WriteMessages(ctx, batch...)
		batch = batch[:0]
		return err
	}
	billed := map[string]bool{}
	cpu0 := cpuTime(tr.cmd.Process.Pid)
	start := time.Now()
	for i := 0; g.Next(&m); i++ {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			if err := flush(); err != nil {
				return res, err
			}
			time.Sleep(d)
		}
		now := time.Now()
		kv := append(append(make([]byte, 0, len(m.Key)+len(m.Value)), m.Key...), m.Value...)
		fresh := m.Kind == loadgen.KindFresh
		mu.Lock()
		recs = append(recs, produced{topic: m.Topic, at: now, fresh: fresh})
		mu.Unlock()
		if fresh {
			for _, ev := range g.Intended(&m) {
				causeAt[ev.ID] = now
				billed[ev.CustomerID] = true
			}
		}
		batch = append(batch, kafka.Message{Topic: m.Topic, Key: kv[:len(m.Key):len(m.Key)], Value: kv[len(m.Key):], Time: now, WriterData: i})
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	if err := w.Close(); err != nil {
		return res, err
	}
	res.produceElapsed = time.Since(start)
	if prodErr != nil {
		return res, prodErr
	}
	exp := g.Expected()
	res.events = exp.Counts.Events
	res.messages = int64(len(recs))

	if err := tr.waitCaughtUp(ctx, o.broker, name, inputs, 10*time.Minute); err != nil {
		return res, err
	}
	res.wall = time.Since(start)
	res.cpu, res.rss = cpuTime(tr.cmd.Process.Pid)-cpu0, max(tr.rss, peakRSS(tr.cmd.Process.Pid))
	res.customers = len(billed)

	// Every batch tariff committed is in ClickHouse and every alert in the
	// topic; wait until the poller and the readers have seen them.
	last := map[tp]int64{}
	for _, r := range recs {
		if !r.acked {
			return res, fmt.Errorf("message to %s was never acknowledged", r.topic)
		}
		if r.fresh {
			last[tp{r.topic, r.partition}] = max(last[tp{r.topic, r.partition}], r.offset)
		}
	}
	alertEnd, err := endOffsets(ctx, o.broker, alertTopic)
	if err != nil {
		return res, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !pl.covers(last) || ar.count() < alertEnd {
		if time.Now().After(deadline) {
			break // reported as unattributed / missing below
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopBG()
	wg.Wait()

	seen := pl.snapshot()
	for _, r := range recs {
		if !r.fresh {
			continue
		}
		res.fresh++
		obs := seen[tp{r.topic, r.partition}]
		i, _ := slices.BinarySearchFunc(obs, r.offset, func(o observation, off int64) int {
			if o.max < off {
				return -1
			}
			return 1
		})
		if i == len(obs) {
			res.unattributed++
			continue
		}
		res.queryable = append(res.queryable, obs[i].at.Sub(r.at))
	}
	res.polls, res.pollMax = pl.polls, pl.slowest
	for _, a := range ar.alerts {
		res.alertsTotal++
		if a.Cause.Kind != "usage" {
			continue
		}
		at, ok := causeAt[a.Cause.ID]
		if !ok {
			continue
		}
		res.alertsMatched++
		res.alertKinds[a.Kind]++
		res.alertAppend = append(res.alertAppend, a.appended.Sub(at))
		res.alertRecv = append(res.alertRecv, a.received.Sub(at))
	}
	if res.alertsTotal < alertEnd {
		return res, fmt.Errorf("read %d of the %d alerts in %s within 30s of tariff catching up", res.alertsTotal, alertEnd, alertTopic)
	}
	slices.Sort(res.queryable)
	slices.Sort(res.alertAppend)
	slices.Sort(res.alertRecv)
	return res, nil
}

// poller asks ClickHouse, every interval, for the highest Kafka offset of
// rated_lines per input topic and partition, and keeps when each new
// maximum was first seen. An offset counts as queryable at the end of the
// first query that returned a maximum at or past it: tariff writes a
// batch's rows in one insert, so rows below the maximum of one partition
// became visible no later. The resolution is the interval plus the query
// time.
type poller struct {
	conn   driver.Conn
	every  time.Duration
	topics []string

	mu      sync.Mutex
	seen    map[tp][]observation
	polls   int
	slowest time.Duration
}

func (p *poller) run(ctx context.Context) {
	q := "SELECT kafka_topic, kafka_partition, max(kafka_offset) FROM rated_lines WHERE kafka_topic IN ("
	for i, t := range p.topics {
		if i > 0 {
			q += ", "
		}
		q += "'" + t + "'" // names this program made: letters, digits and dots
	}
	q += ") GROUP BY kafka_topic, kafka_partition"
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t0 := time.Now()
		rows, err := p.conn.Query(ctx, q)
		if err != nil {
			continue // the next poll tries again; a gap only coarsens the times
		}
		var got []struct {
			k   tp
			max int64
		}
		for rows.Next() {
			var topic string
			var part int32
			var off int64
			if rows.Scan(&topic, &part, &off) == nil {
				got = append(got, struct {
					k   tp
					max int64
				}{tp{topic, int(part)}, off})
			}
		}
		rows.Close()
		t1 := time.Now()
		p.mu.Lock()
		p.polls++
		p.slowest = max(p.slowest, t1.Sub(t0))
		for _, x := range got {
			obs := p.seen[x.k]
			if len(obs) == 0 || obs[len(obs)-1].max < x.max {
				p.seen[x.k] = append(obs, observation{max: x.max, at: t1})
			}
		}
		p.mu.Unlock()
	}
}

// covers reports whether every partition's maximum has reached last's.
func (p *poller) covers(last map[tp]int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, off := range last {
		obs := p.seen[k]
		if len(obs) == 0 || obs[len(obs)-1].max < off {
			return false
		}
	}
	return true
}

func (p *poller) snapshot() map[tp][]observation {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}

// alertReader reads the alerts topic, one reader per partition (no
// consumer group, so no join delay), and keeps each alert with the
// broker's append time and its own receipt time.
type alertReader struct {
	mu     sync.Mutex
	alerts []readAlert
}

type readAlert struct {
	Kind  string `json:"kind"`
	Cause struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
	} `json:"cause"`
	appended, received time.Time
}

func (a *alertReader) read(ctx context.Context, broker, topic string, partition int) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: partition,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 20 * time.Millisecond, ReadLagInterval: -1,
		// kafka-go backs off 100ms to 1s after an empty fetch by default:
		// delay of the reader's, not tariff's.
		ReadBackoffMin: time.Millisecond, ReadBackoffMax: 5 * time.Millisecond})
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return // ctx ended (a broker error would also end up as missing alerts, which latencyRun reports)
		}
		now := time.Now()
		var x readAlert
		if json.Unmarshal(m.Value, &x) != nil {
			x.Kind = "undecodable"
		}
		x.appended, x.received = m.Time, now
		a.mu.Lock()
		a.alerts = append(a.alerts, x)
		a.mu.Unlock()
	}
}

func (a *alertReader) count() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int64(len(a.alerts))
}

// endOffsets returns the sum over topic's partitions of the end offsets:
// the number of messages in a topic that was created empty.
func endOffsets(ctx context.Context, broker, topic string) (int64, error) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 10 * time.Second, Transport: tr}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			req.Topics[t.Name] = append(req.Topics[t.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	res, err := c.ListOffsets(ctx, req)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, pos := range res.Topics[topic] {
		if pos.Error != nil {
			return 0, pos.Error
		}
		n += pos.LastOffset
	}
	return n, nil
}

// publishGrants writes one grant command of amount USD per customer of g
// (customer 0 to n-1) to topic, keyed by customer and hash-partitioned like
// the usage, so each lands on the partition that owns the customer's usage.
func publishGrants(ctx context.Context, broker, topic string, g *loadgen.Generator, n int, amount string, at time.Time) error {
	gwt := &kafka.Transport{}
	defer gwt.CloseIdleConnections()
	gw := &kafka.Writer{Addr: kafka.TCP(broker), Transport: gwt, Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchSize: 1000, BatchTimeout: 5 * time.Millisecond}
	chunk := make([]kafka.Message, 0, 1000)
	for c := 0; c < n; c++ {
		id := g.CustomerID(uint32(c))
		chunk = append(chunk, kafka.Message{Key: []byte(id), Value: accounts.GrantCommand(id, amount, at)})
		if len(chunk) == cap(chunk) || c == n-1 {
			if err := gw.WriteMessages(ctx, chunk...); err != nil {
				gw.Close()
				return fmt.Errorf("publish grant commands: %w", err)
			}
			chunk = chunk[:0]
		}
	}
	return gw.Close()
}
