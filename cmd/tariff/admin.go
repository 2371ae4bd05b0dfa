package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/alertwebhooks"
	"github.com/tariff-dev/tariff/pipeline/balance"
)

// commandTopic returns the input topic of format "command" ("" when none
// is configured; Validate refuses more than one).
func commandTopic(cfg *Config) string {
	var topics []string
	for t, f := range cfg.Kafka.Topics {
		if f == pipeline.FormatCommand {
			topics = append(topics, t)
		}
	}
	sort.Strings(topics)
	if len(topics) == 0 {
		return ""
	}
	return topics[0]
}

// stateAccounts reads committed accounts for the admin API: the views say
// which partition holds a customer, the state store has its account and
// closed periods as of the last durable batch.
type stateAccounts struct {
	views *pipeline.Views
	store *pipeline.Store
}

func (s stateAccounts) Account(customer string) (*balance.Account, []balance.PeriodUsage, bool, error) {
	p, ok := s.views.Partition(customer)
	if !ok {
		return nil, nil, false, nil
	}
	a, ok, err := s.store.Account(p, customer)
	if err != nil || !ok {
		return nil, nil, false, err
	}
	periods, err := s.store.Periods(p, customer)
	if err != nil {
		return nil, nil, false, err
	}
	return a, periods, true, nil
}

// checkCommandTopic refuses more than one command topic: the admin API
// writes to one, and the balance stage's ticks go to one.
func (c *Config) checkCommandTopic() error {
	var topics []string
	for t, f := range c.Kafka.Topics {
		if f == pipeline.FormatCommand {
			topics = append(topics, t)
		}
	}
	if len(topics) > 1 {
		sort.Strings(topics)
		return fmt.Errorf("kafka.topics: %s all have format %q: expected at most one command topic", strings.Join(topics, ", "), pipeline.FormatCommand)
	}
	return nil
}

// recentDeliveries serves the alert deliverer's latest attempts to the
// admin API.
type recentDeliveries struct{ d *alertwebhooks.Deliverer }

func (r recentDeliveries) Recent(limit int) any { return r.d.Recent(limit) }

// ensureTopics creates the topics tariff writes to that do not exist yet,
// with the input topics' partition count: a consumer group started on a
// topic that does not exist (the alert webhooks on the alerts topic)
// would otherwise wait for the first writer to create it with the
// broker's defaults.
func ensureTopics(ctx context.Context, brokers []string, rt kafka.RoundTripper, partitions int, topics ...string) error {
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: -1})
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: rt, Timeout: 30 * time.Second}
	res, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics %s: %w", strings.Join(topics, ", "), err)
	}
	var errs []error
	for _, t := range topics {
		if err := res.Errors[t]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}
