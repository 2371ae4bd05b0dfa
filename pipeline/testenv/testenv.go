// Package testenv finds the real Kafka broker and ClickHouse server that
// integration tests run against, and gives each test its own topics and
// database so tests never see each other's data.
//
// The servers are found through TARIFF_TEST_KAFKA (bootstrap host:port) and
// TARIFF_TEST_CLICKHOUSE (native host:port); `make test` starts both and sets
// them. When one is missing a test is skipped with a loud message, except
// under CI=true, where a missing server fails the test: CI must never pass
// by skipping.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func require(t testing.TB, env, what string) string {
	t.Helper()
	addr := os.Getenv(env)
	if addr == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: integration tests need a real %s under CI (run `make test`, which starts it)", env, what)
		}
		t.Skipf("SKIPPED: %s is not set; run `make test` to start a real %s and run this integration test", env, what)
	}
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s=%s: no %s answers: %v", env, addr, what, err)
		}
		t.Skipf("SKIPPED: %s=%s: no %s answers: %v", env, addr, what, err)
	}
	c.Close()
	return addr
}

// Kafka returns the bootstrap address of the test broker.
func Kafka(t testing.TB) string { return require(t, "TARIFF_TEST_KAFKA", "Kafka broker") }

// ClickHouse returns the native address of the test ClickHouse server.
func ClickHouse(t testing.TB) string {
	return require(t, "TARIFF_TEST_CLICKHOUSE", "ClickHouse server")
}

// Name returns a unique name for this test's topics, groups and database:
// letters, digits and underscores only, so it is valid everywhere.
func Name(t testing.TB, prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, t.Name())
	if len(n) > 40 {
		n = n[:40]
	}
	return prefix + "_" + strings.ToLower(n) + "_" + hex.EncodeToString(b[:])
}

// CreateTopics creates topics with the given partition count and waits
// until each has a leader.
func CreateTopics(t testing.TB, broker string, partitions int, topics ...string) {
	t.Helper()
	conn, err := kafka.Dial("tcp", broker)
	if err != nil {
		t.Fatalf("dial kafka %s: %v", broker, err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		t.Fatalf("find kafka controller: %v", err)
	}
	cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		t.Fatalf("dial kafka controller: %v", err)
	}
	defer cc.Close()
	cfgs := make([]kafka.TopicConfig, len(topics))
	for i, tp := range topics {
		cfgs[i] = kafka.TopicConfig{Topic: tp, NumPartitions: partitions, ReplicationFactor: 1}
	}
	if err := cc.CreateTopics(cfgs...); err != nil {
		t.Fatalf("create topics %v: %v", topics, err)
	}
	// A leader in the metadata is not enough: the broker creates the
	// partition's log a moment later, and a produce before that fails with
	// UNKNOWN_TOPIC_OR_PARTITION. ListOffsets is answered by the log itself.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A transport of its own: kafka-go's shared default transport caches
	// topic metadata for seconds, and a lookup made here while the topic
	// is still being created would leave the test's producers seeing "no
	// such topic" from that cache.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 5 * time.Second, Transport: tr}
	for _, tp := range topics {
		reqs := make([]kafka.OffsetRequest, partitions)
		for p := range reqs {
			reqs[p] = kafka.LastOffsetOf(p)
		}
		for {
			res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{tp: reqs}})
			if err == nil {
				ready := len(res.Topics[tp]) == partitions
				for _, po := range res.Topics[tp] {
					if po.Error != nil {
						ready, err = false, po.Error
					}
				}
				if ready {
					break
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("topic %s not ready after 30s: %v", tp, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
