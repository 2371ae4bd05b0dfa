package sources

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedConfig configures the in-process broker of the embedded default.
type EmbeddedConfig struct {
	// Port is the port on 127.0.0.1 to listen on. Default 9092; 0 picks a
	// free port.
	Port int `yaml:"port"`
	// DataDir keeps the broker's log across restarts. Default
	// "./tariff-data/broker". Empty in tests keeps it in memory.
	DataDir string `yaml:"data_dir"`
	// Partitions is the partition count of the topics it creates. Default 3.
	Partitions int `yaml:"partitions"`
}

// EmbeddedBroker is an in-process Kafka-protocol broker for trying tariff
// on a machine with no Kafka. Any Kafka client can publish to it.
//
// It is NOT durable: one node, no replication, and its log is written
// without fsync. Use a real Kafka cluster for billing.
type EmbeddedBroker struct {
	cluster *kfake.Cluster
	addr    string
}

// StartEmbedded starts the broker with the given topics created.
func StartEmbedded(cfg EmbeddedConfig, topics ...string) (*EmbeddedBroker, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 3
	}
	port := cfg.Port
	if port == 0 {
		// kfake takes a fixed port; find a free one first.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port for the embedded broker: %w", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	opts := []kfake.Opt{
		kfake.Ports(port),
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.SeedTopics(int32(cfg.Partitions), topics...),
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("create embedded broker dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on 127.0.0.1:%d (is another Kafka running there?): %w", port, err)
	}
	return &EmbeddedBroker{cluster: c, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, nil
}

// Addr is the bootstrap address.
func (b *EmbeddedBroker) Addr() string { return b.addr }

// Close stops the broker, writing its state to DataDir if set.
func (b *EmbeddedBroker) Close() { b.cluster.Close() }
