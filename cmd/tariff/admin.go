package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/alertwebhooks"
	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/ops"
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

// startOwners sets up the ownership records of the group (pipeline/owners.go)
// so the admin API can forward reads of customers this instance does not
// own to the instance that does. nil with the embedded broker: one
// instance owns every partition.
func startOwners(ctx context.Context, cfg *Config, brokers []string, rt kafka.RoundTripper, partitions int, log zerolog.Logger) (*pipeline.Owners, error) {
	if cfg.embedded() {
		return nil, nil
	}
	owners, err := pipeline.NewOwners(brokers, pipeline.OwnersTopic(cfg.Kafka.GroupID), rt, partitions, instanceID(), log)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, log, "kafka", func() error { return owners.Ensure(ctx) }); err != nil {
		return nil, err
	}
	return owners, nil
}

// instanceID names this process in the group: host, process id and a
// random suffix, so a restarted process is a new instance.
func instanceID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "tariff"
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// routeReads makes the admin API's entitlement, account and statement
// reads forward to the owner of the customer's partition when this
// instance holds no account for the customer, and has the ops server
// advertise its URL in the ownership records. Without owners (embedded)
// it changes nothing.
func routeReads(od *opsDeps, views *pipeline.Views, accounts stateAccounts, owners *pipeline.Owners, cfg *Config, log zerolog.Logger) {
	if owners == nil {
		return
	}
	r := ownerRouter{owners}
	od.Entitlements = routedViews{views, r}
	od.Accounts = routedAccounts{accounts, r}
	od.Advertise = func(url string) {
		owners.SetURL(url)
		if url == "" {
			log.Warn().Str("listen", cfg.Ops.Listen).Msg("ops.listen is a wildcard address and ops.advertise_url is not set: other instances cannot forward entitlement and account reads of this instance's customers here, and answer them 503")
		} else {
			log.Debug().Str("url", url).Str("instance", owners.Instance()).Msg("advertising the admin API to the group")
		}
	}
	if !cfg.Ops.Enabled() {
		log.Warn().Msg("ops.listen is off: other instances cannot forward entitlement and account reads of this instance's customers here, and answer them 503")
	}
}

// ownerRouter locates customers through the ownership records.
type ownerRouter struct{ owners *pipeline.Owners }

func (r ownerRouter) Self() string { return r.owners.Instance() }

func (r ownerRouter) Route(customer string) (ops.Route, error) {
	ow, local, err := r.owners.Locate(customer)
	return ops.Route{Partition: ow.Partition, Local: local, Instance: ow.Instance, URL: ow.URL}, err
}

// routedViews answers entitlement from this instance's views and forwards
// the customers it does not hold (ops.Router).
type routedViews struct {
	*pipeline.Views
	ownerRouter
}

// routedAccounts reads accounts from this instance's state and forwards
// the customers it does not hold (ops.Router).
type routedAccounts struct {
	stateAccounts
	ownerRouter
}
