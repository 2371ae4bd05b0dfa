package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/ops/progress"
	"github.com/tariff-dev/tariff/sinks"
)

func cmdDeadLetters(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, `Usage: tariff deadletters <subcommand> [flags]

Subcommands:
  list      count the dead-letter topic's records by stage and reason
  redrive   send dead-lettered messages again to the topic they came from

Run 'tariff deadletters <subcommand> --help' for its flags.
`)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "list":
		return deadLetters(args[1:], stdout, stderr, false)
	case "redrive":
		return deadLetters(args[1:], stdout, stderr, true)
	}
	fmt.Fprintf(stderr, "tariff deadletters: unknown subcommand %q (list or redrive)\n", args[0])
	return errUsage
}

// dlqFilter selects dead-letter records.
type dlqFilter struct {
	stage, reason, topic string
	from, to             time.Time
}

func (f *dlqFilter) match(m *kafka.Message) bool {
	h := func(k string) string {
		for _, x := range m.Headers {
			if x.Key == k {
				return string(x.Value)
			}
		}
		return ""
	}
	if f.stage != "" && h(sinks.HeaderDLQDecoder) != f.stage {
		return false
	}
	if f.reason != "" && !strings.Contains(h(sinks.HeaderDLQReason), f.reason) {
		return false
	}
	if f.topic != "" && h(sinks.HeaderDLQTopic) != f.topic {
		return false
	}
	if !f.from.IsZero() || !f.to.IsZero() {
		at, err := time.Parse(time.RFC3339Nano, h(sinks.HeaderDLQTime))
		if err != nil || (!f.from.IsZero() && at.Before(f.from)) || (!f.to.IsZero() && !at.Before(f.to)) {
			return false
		}
	}
	return true
}

func deadLetters(args []string, stdout, stderr io.Writer, redrive bool) error {
	name, summary := "deadletters list", `Count the dead-letter topic's records (kafka.dead_letter_topic) by the stage
that refused them and the reason, from the oldest kept to the end.`
	if redrive {
		name, summary = "deadletters redrive", `Send dead-lettered messages again, byte for byte with their key, to the
topic each came from (header tariff.dlq.topic), so that tariff run applies
them now. Typical use: events held as unpriced (stage rate) once the model
has a price: an event whose model had no price at its time is rated with the
first price version that lists the model. A message is dead-lettered whole,
so none of its events was billed; events billed since through another copy
are recognized as duplicates and not billed again. A message still refused
is dead-lettered again with its reason. Records are read from the oldest
kept to the end the topic had when the command started.`
	}
	fs := newFlags(name, summary, "", stderr)
	configPath := fs.String("config", "", "YAML configuration file (kafka.brokers, kafka.dead_letter_topic)")
	var f dlqFilter
	fs.StringVar(&f.stage, "stage", map[bool]string{true: "rate"}[redrive], `only records refused by this stage (rate: no price; validate; command; a decoder name); "" for all`)
	fs.StringVar(&f.reason, "reason", "", "only records whose reason contains this text")
	fs.StringVar(&f.topic, "topic", "", "only records that came from this input topic")
	from := fs.String("from", "", "only records dead-lettered at or after this time (RFC 3339)")
	to := fs.String("to", "", "only records dead-lettered before this time (RFC 3339)")
	dry := fs.Bool("dry-run", false, "count what would be sent, send nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, t := range []struct {
		flag, v string
		dst     *time.Time
	}{{"--from", *from, &f.from}, {"--to", *to, &f.to}} {
		if t.v == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.v)
		if err != nil {
			return fmt.Errorf("%s %q: expected an RFC 3339 time such as 2026-11-27T00:00:00Z", t.flag, t.v)
		}
		*t.dst = v
	}
	cfg, _, err := commandConfig(*configPath, stderr)
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return errors.New("kafka.brokers: no brokers configured (the embedded broker lives only inside tariff run)")
	}
	rt, err := cfg.Kafka.Security.RoundTripper()
	if err != nil {
		return err
	}
	dialer, err := cfg.Kafka.Security.Dialer()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	topic := cfg.Kafka.DeadLetterTopic
	client := &kafka.Client{Addr: kafka.TCP(cfg.Kafka.Brokers...), Transport: rt, Timeout: 30 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("dead-letter topic %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return fmt.Errorf("dead-letter topic %s: not found", topic)
	}
	req := map[string][]kafka.OffsetRequest{}
	for _, p := range md.Topics[0].Partitions {
		req[topic] = append(req[topic], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return fmt.Errorf("dead-letter topic %s: offsets: %w", topic, err)
	}
	type span struct{ first, last int64 }
	spans := map[int]*span{}
	var total int64
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return fmt.Errorf("dead-letter topic %s partition %d: %w", topic, po.Partition, po.Error)
		}
		spans[po.Partition] = &span{po.FirstOffset, po.LastOffset}
		total += po.LastOffset - po.FirstOffset
	}

	var w *kafka.Writer
	if redrive && !*dry {
		// The partitioner of every tariff producer: a message keyed by its
		// customer goes back to the partition number it came from.
		w = &kafka.Writer{Addr: kafka.TCP(cfg.Kafka.Brokers...), Transport: rt, Balancer: &kafka.Hash{},
			RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, MaxAttempts: 5}
		defer w.Close()
	}
	label := "deadletters"
	meter := progress.Start(progress.Config{Out: stderr, Label: label, Unit: "records read", RateUnit: "records/s", Total: total})
	counts := map[string]int{}
	var matched, sent int
	var out []kafka.Message
	flush := func() error {
		if w == nil || len(out) == 0 {
			out = out[:0]
			return nil
		}
		if err := w.WriteMessages(ctx, out...); err != nil {
			return fmt.Errorf("send %d messages again: %w (nothing after the last one reported was sent; rerun with --from to continue)", len(out), err)
		}
		sent += len(out)
		out = out[:0]
		return nil
	}
	for _, p := range slices.Sorted(maps.Keys(spans)) {
		sp := spans[p]
		if sp.last <= sp.first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, Topic: topic, Partition: p, Dialer: dialer, MaxWait: time.Second})
		if err := r.SetOffset(sp.first); err != nil {
			r.Close()
			return err
		}
		for off := sp.first; off < sp.last; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return fmt.Errorf("read dead-letter topic %s partition %d at %d: %w", topic, p, off, err)
			}
			off = m.Offset + 1
			meter.Add(1)
			if !f.match(&m) {
				continue
			}
			matched++
			var stage, reason, origin string
			for _, h := range m.Headers {
				switch h.Key {
				case sinks.HeaderDLQDecoder:
					stage = string(h.Value)
				case sinks.HeaderDLQReason:
					reason = string(h.Value)
				case sinks.HeaderDLQTopic:
					origin = string(h.Value)
				}
			}
			counts[stage+"\t"+firstLine(errors.New(reason))]++
			if redrive {
				if origin == "" {
					r.Close()
					return fmt.Errorf("dead-letter record %s/%d@%d has no %s header: not a tariff dead-letter record", topic, p, m.Offset, sinks.HeaderDLQTopic)
				}
				out = append(out, kafka.Message{Topic: origin, Key: m.Key, Value: m.Value})
				if len(out) >= 500 {
					if err := flush(); err != nil {
						r.Close()
						return err
					}
				}
			}
		}
		r.Close()
	}
	if err := flush(); err != nil {
		return err
	}
	meter.Done()

	keys := slices.Collect(maps.Keys(counts))
	sort.Slice(keys, func(i, j int) bool {
		return counts[keys[i]] > counts[keys[j]] || counts[keys[i]] == counts[keys[j]] && keys[i] < keys[j]
	})
	fmt.Fprintf(stdout, "%d of %d dead-letter records match\n", matched, total)
	for _, k := range keys {
		stage, reason, _ := strings.Cut(k, "\t")
		fmt.Fprintf(stdout, "%8d  %-10s %s\n", counts[k], stage, reason)
	}
	switch {
	case redrive && *dry:
		fmt.Fprintf(stdout, "dry run: %d messages would be sent again\n", matched)
	case redrive:
		fmt.Fprintf(stdout, "sent %d messages again to the topics they came from\n", sent)
	}
	return nil
}
