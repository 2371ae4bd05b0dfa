package pipeline

// Ownership records: which instance of the group owns each partition now.
//
// A customer's account is in memory (Views) only on the instance that owns
// the customer's partition, so an instance asked about a customer of
// another instance's partition cannot answer from its own memory: without
// help it would say "never seen", and the entitlement check would let a
// paused or exhausted customer through. So each instance, when a partition
// worker starts (restored, its views loaded), publishes an ownership
// record {partition, generation, instance, admin URL} to a compacted
// single-partition topic keyed by partition number, and every instance
// follows that topic into a map partition -> owner. The admin API then
// forwards a read it cannot answer to the owner (pipeline/ops, forward.go).
//
// Fencing: within a group generation each partition has one owner, and
// generations only grow, so the record of the highest generation wins and
// a late record of an older generation (a claim whose write was in flight
// when its generation ended) is ignored. One exception: when a consumer
// group is deleted (every instance down longer than the broker keeps an
// empty group's offsets) its generations start again from 1, and the old
// records would win for ever. A claim is written within seconds of its
// generation's start and given up when the generation ends, so a record of
// a lower generation written ownerResetAfter or more after the one it
// would replace cannot be a late claim: it is taken as a group that
// started over.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// ownerResetAfter: see the fencing note above. It is far longer than any
// claim can be late and than clocks of one cluster disagree, and far
// shorter than the days a group must be empty before it is deleted.
const ownerResetAfter = time.Hour

// OwnersTopic returns the ownership topic of a consumer group.
func OwnersTopic(groupID string) string { return groupID + ".owners" }

// Owner is one ownership record: the value of the ownership topic, keyed
// by the partition number in decimal.
type Owner struct {
	Partition  int    `json:"partition"`
	Generation int32  `json:"generation"`
	Instance   string `json:"instance"`
	// URL is the owner's admin API base URL (ops.advertise_url); empty
	// when the owner cannot be reached (no address to advertise).
	URL string `json:"url"`
	// at is when the record was written (the record's timestamp).
	at time.Time
}

// Errors of Owners.Locate.
var (
	// ErrNoOwner: no instance has claimed the customer's partition yet
	// (this instance is starting, or the group is rebalancing).
	ErrNoOwner = errors.New("no owner known")
	// ErrMoving: the record names this instance, which does not own the
	// partition now (it is moving to another instance).
	ErrMoving = errors.New("partition moving")
	// ErrNoURL: the owner advertises no admin URL.
	ErrNoURL = errors.New("owner has no admin URL")
)

// Owners publishes this instance's ownership records and follows every
// instance's. Methods are safe for concurrent use.
type Owners struct {
	client     *kafka.Client
	topic      string
	partitions int
	instance   string
	log        zerolog.Logger

	mu    sync.RWMutex
	url   string
	known map[int]Owner // partition -> owner, from the topic and own claims
	local map[int]int32 // partitions owned here now -> generation
}

// NewOwners publishes to and follows topic on brokers through rt (nil:
// plaintext). partitions is the input topics' partition count; instance
// names this process (unique in the group).
func NewOwners(brokers []string, topic string, rt kafka.RoundTripper, partitions int, instance string, log zerolog.Logger) (*Owners, error) {
	switch {
	case len(brokers) == 0:
		return nil, errors.New("ownership topic: no kafka brokers")
	case topic == "":
		return nil, errors.New("ownership topic: expected a topic name")
	case partitions < 1:
		return nil, fmt.Errorf("ownership topic: %d input partitions: expected at least 1", partitions)
	case instance == "":
		return nil, errors.New("ownership topic: expected an instance id")
	}
	return &Owners{
		client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second, Transport: rt},
		topic:  topic, partitions: partitions, instance: instance,
		log:   log.With().Str("component", "owners").Logger(),
		known: make(map[int]Owner), local: make(map[int]int32),
	}, nil
}

// Instance returns this instance's id.
func (o *Owners) Instance() string { return o.instance }

// Topic returns the ownership topic.
func (o *Owners) Topic() string { return o.topic }

// SetURL sets the admin URL this instance advertises in its records ("":
// none). Call it before the runner runs: claims made earlier carry the
// URL set then.
func (o *Owners) SetURL(url string) {
	o.mu.Lock()
	o.url = url
	o.mu.Unlock()
}

// Ensure creates the topic if it does not exist: one partition (one order
// for all records), compacted (only the latest record per partition
// matters).
func (o *Owners) Ensure(ctx context.Context) error {
	res, err := o.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: o.topic, NumPartitions: 1, ReplicationFactor: -1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
	}}})
	if err != nil {
		return fmt.Errorf("create ownership topic %s: %w", o.topic, err)
	}
	if err := res.Errors[o.topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create ownership topic %s: %w", o.topic, err)
	}
	return nil
}

// PartitionOf returns the partition kafka-go's Hash balancer (what every
// producer of tariff's input uses) writes key to among n partitions: the
// FNV-1a hash of the key as an int32, modulo n, made positive (as Sarama's
// hash partitioner does). Inlined so that a lookup does not allocate.
func PartitionOf(key string, n int) int {
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= prime32
	}
	p := int32(h) % int32(n)
	if p < 0 {
		p = -p
	}
	return int(p)
}

// Locate says where customer's account lives: local is true when this
// instance owns the customer's partition now (so a customer without a
// view here is unknown everywhere); else owner names the instance that
// does. The error (ErrNoOwner, ErrMoving, ErrNoURL) says why no
// instance can be asked.
func (o *Owners) Locate(customer string) (owner Owner, local bool, err error) {
	p := PartitionOf(customer, o.partitions)
	o.mu.RLock()
	defer o.mu.RUnlock()
	if _, ok := o.local[p]; ok {
		return Owner{Partition: p, Instance: o.instance, URL: o.url}, true, nil
	}
	ow, ok := o.known[p]
	switch {
	case !ok:
		return Owner{Partition: p}, false, fmt.Errorf("partition %d: %w yet (the group is starting or rebalancing)", p, ErrNoOwner)
	case ow.Instance == o.instance:
		return ow, false, fmt.Errorf("partition %d: recorded as owned by this instance, which no longer owns it: %w to another instance", p, ErrMoving)
	case ow.URL == "":
		return ow, false, fmt.Errorf("partition %d: its owner %s listens on a wildcard address without ops.advertise_url: %w", p, ow.Instance, ErrNoURL)
	}
	return ow, false, nil
}

// claim records that this instance owns partition p in generation gen
// (restored, its views loaded) and publishes it, retrying in the
// background until it is written or ctx (the partition's generation)
// ends. A claim failing to publish does not stop the partition: reads of
// its customers on other instances answer "no owner known" meanwhile.
func (o *Owners) claim(ctx context.Context, p int, gen int32) {
	o.mu.Lock()
	o.local[p] = gen
	rec := Owner{Partition: p, Generation: gen, Instance: o.instance, URL: o.url, at: time.Now()}
	o.applyLocked(rec)
	o.mu.Unlock()
	go func() {
		backoff := 100 * time.Millisecond
		for {
			err := o.publish(ctx, rec)
			if err == nil || ctx.Err() != nil {
				return
			}
			o.log.Warn().Err(err).Int("partition", p).Msg("publish ownership record failed; retrying")
			if !Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}()
}

// release records that this instance no longer owns p. No record is
// written: the next owner's claim, of a higher generation, replaces ours,
// and until then a read forwarded here is answered "not the owner".
func (o *Owners) release(p int) {
	o.mu.Lock()
	delete(o.local, p)
	o.mu.Unlock()
}

func (o *Owners) publish(ctx context.Context, rec Owner) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	res, err := o.client.Produce(ctx, &kafka.ProduceRequest{
		Topic: o.topic, Partition: 0, RequiredAcks: kafka.RequireAll,
		Records: kafka.NewRecordReader(kafka.Record{Key: kafka.NewBytes([]byte(strconv.Itoa(rec.Partition))), Value: kafka.NewBytes(v), Time: rec.at}),
	})
	if err != nil {
		return fmt.Errorf("write ownership topic %s: %w", o.topic, err)
	}
	if res.Error != nil {
		return fmt.Errorf("write ownership topic %s: %w", o.topic, res.Error)
	}
	return nil
}

// applyLocked takes rec into the map unless it is fenced (see the note at
// the top). o.mu must be held.
func (o *Owners) applyLocked(rec Owner) {
	cur, ok := o.known[rec.Partition]
	if !ok || rec.Generation >= cur.Generation || rec.at.Sub(cur.at) >= ownerResetAfter {
		o.known[rec.Partition] = rec
	}
}

// Owner returns the recorded owner of partition p.
func (o *Owners) Owner(p int) (Owner, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	ow, ok := o.known[p]
	return ow, ok
}

// Run follows the topic from its start until ctx ends, retrying failed
// reads with backoff. A record that is not an ownership record is logged
// and skipped.
func (o *Owners) Run(ctx context.Context) error {
	next := kafka.FirstOffset
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		n, err := o.fetch(ctx, &next)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, kafka.OffsetOutOfRange) {
				next = kafka.FirstOffset // compacted or deleted under us
			}
			o.log.Warn().Err(err).Msg("follow ownership topic; retrying")
			if !Sleep(ctx, backoff) {
				break
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		if n > 0 {
			backoff = 100 * time.Millisecond
		}
	}
	return nil
}

// fetch reads the records from *next on (waiting up to a second for one)
// and applies them, moving *next past them.
func (o *Owners) fetch(ctx context.Context, next *int64) (int, error) {
	res, err := o.client.Fetch(ctx, &kafka.FetchRequest{Topic: o.topic, Partition: 0, Offset: *next, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: time.Second})
	if err != nil {
		return 0, fmt.Errorf("read ownership topic %s: %w", o.topic, err)
	}
	if res.Error != nil {
		return 0, fmt.Errorf("read ownership topic %s: %w", o.topic, res.Error)
	}
	n := 0
	for {
		rec, err := res.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read ownership topic %s: %w", o.topic, err)
		}
		if rec.Offset < *next {
			continue // a fetch may return a batch that starts earlier
		}
		*next = rec.Offset + 1
		n++
		if rec.Value == nil {
			continue // a tombstone: nothing to apply
		}
		b, err := io.ReadAll(rec.Value)
		rec.Value.Close()
		var ow Owner
		if err == nil {
			err = json.Unmarshal(b, &ow)
		}
		if err == nil && (ow.Partition < 0 || ow.Instance == "") {
			err = fmt.Errorf("partition %d, instance %q: expected a partition number and an instance id", ow.Partition, ow.Instance)
		}
		if err != nil {
			o.log.Warn().Err(err).Int64("offset", rec.Offset).Msg("skipping a record of the ownership topic that is not an ownership record")
			continue
		}
		ow.at = rec.Time
		o.mu.Lock()
		o.applyLocked(ow)
		o.mu.Unlock()
	}
}

// SetOwners makes the runner claim each partition in o when its worker
// starts (restored, its views loaded) and release it when it stops. Call
// it before Run.
func (r *Runner) SetOwners(o *Owners) { r.owners = o }
